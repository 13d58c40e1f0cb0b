"""The LogJoinExampleGen executor on real Parquet logs, checked against pandas."""
import datetime as dt
import glob
import json
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from pipeline_components.components import join_logic, log_join
from pipeline_components.components.raw_logs import MissingLogsError
from tests.pipeline_components.components.join_helpers import WINDOW_DAYS, read_examples as _read_examples, run_join as _run



@pytest.fixture(scope="module")
def joined(small_logs, tmp_path_factory):
    out = tmp_path_factory.mktemp("join")
    examples, report = _run(small_logs["logs"], out, small_logs["start"].isoformat())
    with open(os.path.join(report.uri, "join_report.json")) as fh:
        return examples, json.load(fh), _read_examples(examples.uri)


def test_labels_match_an_independent_pandas_join(small_logs, joined):
    _, _, got = joined
    day = small_logs["start"]
    part = lambda log: pd.read_parquet(os.path.join(small_logs["logs"], log, f"date={day:%Y-%m-%d}"))  # noqa: E731
    imp, clicks, conv = part("impressions"), part("clicks"), part("conversions")
    first_click = clicks.groupby("impression_id")["timestamp"].min()
    conv = conv.join(first_click.rename("click_ts"), on="impression_id", how="inner")
    window = pd.Timedelta(days=WINDOW_DAYS)
    ok = conv[(conv["timestamp"] >= conv["click_ts"]) & (conv["timestamp"] <= conv["click_ts"] + window)]
    want = imp[["impression_id", "scene"]].assign(
        click=imp["impression_id"].isin(first_click.index).astype(int),
        conversion=imp["impression_id"].isin(ok["impression_id"]).astype(int))
    merged = want.merge(got, on="impression_id", suffixes=("", "_got"), validate="one_to_one")
    assert len(merged) == len(imp) == len(got)
    assert (merged["click"] == merged["click_got"]).all()
    assert (merged["conversion"] == merged["conversion_got"]).all()
    assert (merged["scene"] == merged["scene_got"]).all()
    assert merged["click"].sum() > 50 and merged["conversion"].sum() > 5


def test_every_input_row_is_accounted_for(small_logs, joined):
    _, report, _ = joined
    day = small_logs["start"]
    for log in ("impressions", "clicks", "conversions"):
        raw_rows = len(pd.read_parquet(os.path.join(small_logs["logs"], log, f"date={day:%Y-%m-%d}")))
        acc = report["accounting"][log]
        assert acc["input"] == raw_rows
        buckets = sum(acc[b] for b in ("joined", "duplicate", "orphan", "quarantined", "out_of_window"))
        assert buckets == raw_rows
    # Conversions of the previous day's impressions land here without their impression: orphans.
    assert report["accounting"]["conversions"]["orphan"] > 0
    assert report["accounting"]["clicks"]["duplicate"] > 0


def test_output_is_a_standard_examples_artifact_for_the_span(small_logs, joined):
    examples, report, got = joined
    span = (small_logs["start"] - dt.date(1970, 1, 1)).days
    assert examples.span == span and report["span"] == span
    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "eval"]
    assert examples.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
    share = (got["split"] == "eval").mean()
    assert 0.15 < share < 0.25
    assert report["examples"]["train"] + report["examples"]["eval"] == len(got)


def test_examples_are_written_in_a_label_independent_order(small_logs, joined):
    """Beam's group order put every clicked impression first; with a window larger than the
    Trainer's shuffle buffer the last steps of an epoch then saw almost no clicks and the model
    under-predicted. Each split is written in hash buckets of the id (about 2,000 impressions
    each), each bucket contiguous and in hash order."""
    _, report, got = joined
    buckets = join_logic.write_order_buckets(report["accounting"]["impressions"]["input"])
    assert buckets >= 2  # the fixture day is large enough to exercise more than one bucket
    for _, rows in got.groupby("split", sort=False):
        ids = rows["impression_id"].tolist()
        of = [join_logic.write_order_bucket(i, buckets) for i in ids]
        runs = [b for i, b in enumerate(of) if i == 0 or b != of[i - 1]]
        assert len(runs) == len(set(runs))
        for b in set(of):
            keys = [join_logic.write_order_key(i) for i, bb in zip(ids, of) if bb == b]
            assert keys == sorted(keys)
        clicks = rows["click"].to_numpy()
        half = len(clicks) // 2
        # Group order had every click in the first part; a label-independent order has about the
        # day's rate in each half (a binomial bound, 4 standard deviations).
        p = clicks.mean()
        assert abs(clicks[:half].mean() - p) < 4 * (p * (1 - p) / half) ** 0.5


def test_write_order_buckets_hold_thousands_of_rows_and_are_capped():
    assert join_logic.write_order_buckets(0) == join_logic.write_order_buckets(1999) == 1
    assert join_logic.write_order_buckets(200_000) == 100
    assert join_logic.write_order_buckets(10 ** 10) == join_logic.MAX_WRITE_BUCKETS


def test_missing_day_fails_naming_path_and_date(small_logs, tmp_path):
    with pytest.raises(MissingLogsError) as err:
        _run(small_logs["logs"], tmp_path, "2026-12-24")
    msg = str(err.value)
    assert "2026-12-24" in msg and os.path.join(small_logs["logs"], "impressions") in msg
    assert not glob.glob(str(tmp_path / "examples" / "*" / "*.gz"))


def _corrupt(logs_root, day, n_bad):
    path = os.path.join(logs_root, "impressions", f"date={day:%Y-%m-%d}", "part-00000.parquet")
    df = pq.read_table(path).to_pandas()
    bad = df.head(n_bad).copy()
    bad["impression_id"] = [f"bad-{i}" for i in range(n_bad)]
    bad.loc[bad.index[::2], "scene"] = "moon_base"
    bad.loc[bad.index[1::2], "item_price"] = -1.0
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False, schema=pq.read_schema(path)),
                   path.replace("part-00000", "part-00001"))
    with open(path.replace("part-00000.parquet", "part-00002.parquet"), "wb") as fh:
        fh.write(b"not parquet at all")


def test_bad_rows_are_quarantined_with_reasons_and_the_run_fails_over_threshold(small_logs, tmp_path):
    logs = str(tmp_path / "logs")
    shutil.copytree(small_logs["logs"], logs)
    day = small_logs["start"]
    _corrupt(logs, day, 10)
    evidence = tmp_path / "home" / "quarantine"
    with pytest.raises(log_join.QuarantineThresholdError) as err:
        _run(logs, tmp_path / "out", day.isoformat(), max_quarantine=0.5, evidence_root=str(evidence))
    msg = str(err.value)
    assert "1 unreadable file(s)" in msg and "unknown scene" in msg
    assert "within the 50.00% limit" in msg and "over log_join.max_quarantine_fraction" not in msg
    with open(tmp_path / "out" / "report" / "join_report.json") as fh:
        report = json.load(fh)
    acc = report["accounting"]["impressions"]
    assert acc["quarantined"] == 10 and acc["input"] == acc["accounted"]
    assert report["unreadable_files"] == 1
    reasons = report["quarantine_reasons"]
    assert reasons["impressions: item_price below 0.0"] == 5
    assert any(r.startswith("impressions: unknown scene") and n == 5 for r, n in reasons.items())

    # TFX deletes a failed execution's output: the evidence must survive that, where the message says.
    shutil.rmtree(tmp_path / "out")
    kept = evidence / day.isoformat() / "attempt-1"
    assert str(kept / "quarantine") in msg
    lines = [json.loads(x) for f in glob.glob(str(kept / "quarantine" / "*.jsonl")) for x in open(f)]
    assert sum(1 for q in lines if q["row"] is not None) == 10
    assert sum(1 for q in lines if q["row"] is None) == 1     # the unreadable file, named
    assert all(q["reason"] and q["file"] for q in lines)
    with open(kept / "join_report.json") as fh:
        assert json.load(fh)["accounting"] == report["accounting"]

    # A second failed attempt of the same date keeps its own copy beside the first.
    with pytest.raises(log_join.QuarantineThresholdError) as err2:
        _run(logs, tmp_path / "out2", day.isoformat(), max_quarantine=0.0001, evidence_root=str(evidence))
    assert str(evidence / day.isoformat() / "attempt-2" / "quarantine") in str(err2.value)
    assert "over log_join.max_quarantine_fraction = 0.01%" in str(err2.value)
    assert "1 unreadable file(s)" in str(err2.value)
    assert sorted(os.listdir(evidence / day.isoformat())) == ["attempt-1", "attempt-2"]


@pytest.mark.parametrize("quarantined, unreadable, expected", [
    (0, 0, []),
    (5, 0, ["over log_join.max_quarantine_fraction"]),
    (0, 2, ["2 unreadable file(s)"]),
    (5, 1, ["over log_join.max_quarantine_fraction", "1 unreadable file(s)"]),
    (1, 1, ["1 unreadable file(s)"]),
])
def test_the_error_names_each_failed_condition(quarantined, unreadable, expected):
    failed = log_join.failed_conditions(quarantined, 100, 0.02, unreadable)
    assert len(failed) == len(expected)
    assert all(e in f for e, f in zip(expected, failed))
