"""A three-step funnel (impression -> click -> cart -> conversion) through the LogJoinExampleGen
executor: a generated day with a `carts` log, plus injected orphan, out-of-window and bad rows.

Checked against an independent pandas join (labels and every bucket of every log), against the
generator's true probabilities (loose binomial bounds computed from the truth files), and for
nested labels on every row. The config rules of ``log_join.funnel`` are checked without Beam."""
import datetime as dt
import json
import os
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from loggen import WorldConfig, write_days
from pipeline_components.components import join_logic, log_join
from pipeline_components.components.raw_logs import MissingLogsError
from schemas import DAY_US, partition_dir
from tests.pipeline_components.components.join_helpers import read_examples, run_join

D = dt.date(2026, 11, 20)
DELAY = 7                        # run D + 7 reads every event the generator draws for day D's impressions
RUN = D + dt.timedelta(days=DELAY)
IMPRESSIONS = 20_000
CART_WINDOW_DAYS, CONVERSION_WINDOW_DAYS = 1, 7
FUNNEL = [{"log": "clicks", "label": "click"},
          {"log": "carts", "label": "cart", "after": "click", "attribution_window_days": CART_WINDOW_DAYS},
          {"log": "conversions", "label": "conversion", "after": "cart",
           "attribution_window_days": CONVERSION_WINDOW_DAYS}]
LOGS = ("impressions", "clicks", "carts", "conversions")
BUCKETS = ("joined", "duplicate", "orphan", "quarantined", "out_of_window")
H = 3600 * 1_000_000
D_DAY = (D - dt.date(1970, 1, 1)).days


def _read(root, log, days):
    frames = [pd.read_parquet(partition_dir(root, log, D + dt.timedelta(days=d))) for d in days]
    df = pd.concat(frames, ignore_index=True)
    df["timestamp"] = df["timestamp"].astype("int64") // 1000 if df["timestamp"].dtype.kind == "M" else df["timestamp"]
    return df


def _inject(root, log, ids, ts, name):
    """Extra rows in the partition of each row's day (or of ``ts``'s day for quarantine: see caller)."""
    df = pd.DataFrame({"impression_id": ids, "timestamp": np.asarray(ts, dtype=np.int64)})
    for day, rows in df.groupby(df["timestamp"] // DAY_US):
        _write(root, log, dt.date(1970, 1, 1) + dt.timedelta(days=int(day)), rows, name)


def _write(root, log, date, rows, name):
    table = pa.table({"impression_id": pa.array(list(rows["impression_id"]), pa.string()),
                      "timestamp": pa.array(rows["timestamp"].to_numpy(), pa.int64()).cast(pa.timestamp("us", tz="UTC"))})
    pq.write_table(table, os.path.join(partition_dir(root, log, date), f"{name}.parquet"))


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    root = tmp_path_factory.mktemp("funnel")
    logs, truth = str(root / "logs"), str(root / "truth")
    write_days(logs, truth, D, DELAY + 1, IMPRESSIONS, WorldConfig(carts=True), progress=None)
    days = range(DELAY + 1)
    imps = pd.read_parquet(partition_dir(logs, "impressions", D))
    imp_ts = imps.set_index("impression_id")["timestamp"].astype("int64") // 1000
    clicks, carts = _read(logs, "clicks", days), _read(logs, "carts", days)
    first_click = clicks[clicks["impression_id"].isin(imp_ts.index)].groupby("impression_id")["timestamp"].min()
    carted = set(carts["impression_id"])
    # Clicked on day D (the click itself on day D), never carted: room for carts that must not label.
    spare = [i for i in first_click.index if i not in carted and first_click[i] // DAY_US == D_DAY]
    unclicked = [i for i in imp_ts.index if i not in first_click.index]
    early, late, no_cart = spare[:5], spare[5:10], spare[10:13]
    injected = {
        # Before the click and after the cart window: out_of_window.
        "carts.out_of_window": (early + late, [first_click[i] - 1 for i in early]
                                + [first_click[i] + CART_WINDOW_DAYS * DAY_US + H for i in late]),
        # No click, or no impression at all: orphans.
        "carts.orphan": (unclicked[:4] + ["nope-1", "nope-2", "nope-3"],
                         [imp_ts[i] + 60_000_000 for i in unclicked[:4]] + [imp_ts.iloc[0]] * 3),
        # A conversion on a clicked impression that was never carted: its parent step is missing.
        "conversions.orphan": (no_cart, [first_click[i] + H for i in no_cart]),
    }
    _inject(logs, "carts", *injected["carts.out_of_window"], "injected-oow")
    _inject(logs, "carts", *injected["carts.orphan"], "injected-orphan")
    _inject(logs, "conversions", *injected["conversions.orphan"], "injected-orphan")
    # Timestamps of the day before, in day D's partition: quarantined.
    _write(logs, "carts", D, pd.DataFrame({"impression_id": early[:2], "timestamp": [imp_ts.iloc[0] - DAY_US] * 2}),
           "injected-bad")
    examples, report = run_join(logs, root / "out", RUN.isoformat(), delay=DELAY, funnel=FUNNEL)
    with open(os.path.join(report.uri, "join_report.json")) as fh:
        summary = json.load(fh)
    got = read_examples(examples.uri, labels=("click", "cart", "conversion"))
    return {"logs": logs, "truth": truth, "report": summary, "got": got,
            "injected": {k: len(v[0]) for k, v in injected.items()}}


def _pandas_join(logs):
    """The three-step rules written with pandas on the partitions the run reads."""
    days = range(DELAY + 1)
    imps = pd.read_parquet(partition_dir(logs, "impressions", D))[["impression_id", "scene"]]
    clicks, carts, convs = (_read(logs, log, days) for log in ("clicks", "carts", "conversions"))
    carts = carts[carts["timestamp"] >= D_DAY * DAY_US]   # the injected bad rows (the day before): quarantined
    known = set(imps["impression_id"])
    acc = {}
    c = clicks[clicks["impression_id"].isin(known)]
    first_click = c.groupby("impression_id")["timestamp"].min()
    acc["clicks"] = {"joined": len(first_click), "duplicate": len(c) - len(first_click),
                     "orphan": len(clicks) - len(c), "out_of_window": 0}

    def step(events, parent_first, window_days):
        has = events[events["impression_id"].isin(parent_first.index)]
        start = has["impression_id"].map(parent_first)
        ok = has[(has["timestamp"] >= start) & (has["timestamp"] <= start + window_days * DAY_US)]
        first = ok.groupby("impression_id")["timestamp"].min()
        return first, {"joined": len(first), "duplicate": len(ok) - len(first),
                       "orphan": len(events) - len(has), "out_of_window": len(has) - len(ok)}

    first_cart, acc["carts"] = step(carts, first_click, CART_WINDOW_DAYS)
    first_conv, acc["conversions"] = step(convs, first_cart, CONVERSION_WINDOW_DAYS)
    want = imps.assign(click=imps["impression_id"].isin(first_click.index).astype(int),
                       cart=imps["impression_id"].isin(first_cart.index).astype(int),
                       conversion=imps["impression_id"].isin(first_conv.index).astype(int))
    return want, acc


def test_labels_and_buckets_match_an_independent_pandas_join(day):
    want, acc = _pandas_join(day["logs"])
    merged = want.merge(day["got"], on="impression_id", suffixes=("", "_got"), validate="one_to_one")
    assert len(merged) == len(want) == len(day["got"]) == IMPRESSIONS
    for label in ("click", "cart", "conversion", "scene"):
        assert (merged[label] == merged[f"{label}_got"]).all(), label
    report = day["report"]["accounting"]
    for log in ("clicks", "carts", "conversions"):
        for bucket, n in acc[log].items():
            assert report[log][bucket] == n, (log, bucket)
    assert report["carts"]["quarantined"] == 2
    assert day["report"]["examples"]["carts"] == want["cart"].sum()


def test_every_row_of_every_log_is_in_exactly_one_bucket(day):
    report = day["report"]["accounting"]
    assert set(report) == set(LOGS)
    days = range(DELAY + 1)
    for log in LOGS:
        rows = sum(len(pd.read_parquet(partition_dir(day["logs"], log, D + dt.timedelta(days=d))))
                   for d in (days if log != "impressions" else [0]))
        assert report[log]["input"] == rows == sum(report[log][b] for b in BUCKETS), log


def test_orphan_and_out_of_window_carts_are_bucketed_and_never_label(day):
    report, got = day["report"]["accounting"], day["got"].set_index("impression_id")
    assert report["carts"]["out_of_window"] >= day["injected"]["carts.out_of_window"]
    # Orphans: the injected ones plus the carts of other days' impressions read by this run.
    assert report["carts"]["orphan"] > day["injected"]["carts.orphan"]
    assert report["conversions"]["orphan"] >= day["injected"]["conversions.orphan"]
    assert report["carts"]["duplicate"] > 0
    # The injected carts were on impressions never carted, or not clicked at all: still cart = 0.
    assert got["cart"].sum() == report["carts"]["joined"]


def test_labels_are_nested_on_every_row(day):
    got = day["got"]
    assert (got["cart"] <= got["click"]).all() and (got["conversion"] <= got["cart"]).all()
    assert got["cart"].sum() > 200 and got["conversion"].sum() > 50


def _within(observed, p, k=5.0):
    """Observed successes against the sum of their true probabilities: k standard deviations (+1)."""
    expected, sd = p.sum(), np.sqrt((p * (1 - p)).sum())
    assert abs(observed - expected) <= k * sd + 1, (observed, expected, sd)


def test_labels_follow_the_true_probabilities(day):
    truth = pd.read_parquet(os.path.join(day["truth"], f"date={D:%Y-%m-%d}"))
    assert np.allclose(truth["p_cvr"], truth["p_cart"] * truth["p_purchase"])
    rows = day["got"].merge(truth, on="impression_id", validate="one_to_one")
    clicked, carted = rows[rows["click"] == 1], rows[rows["cart"] == 1]
    _within(rows["click"].sum(), rows["p_ctr"])
    _within(rows["cart"].sum(), rows["p_ctcart"])
    _within(rows["conversion"].sum(), rows["p_ctcvr"])
    _within(clicked["cart"].sum(), clicked["p_cart"])            # P(cart | click)
    _within(carted["conversion"].sum(), carted["p_purchase"])    # P(conversion | cart)
    _within(clicked["conversion"].sum(), clicked["p_cvr"])       # P(conversion | click)


def test_the_report_names_the_funnel_and_its_longest_chain(day):
    report = day["report"]
    assert [s["log"] for s in report["funnel"]] == ["clicks", "carts", "conversions"]
    assert report["funnel"][0]["attribution_window_days"] is None
    assert report["longest_chain_window_days"] == CART_WINDOW_DAYS + CONVERSION_WINDOW_DAYS


def test_a_declared_log_without_its_partition_fails_naming_it(small_logs, tmp_path):
    # The default generator writes no carts log.
    with pytest.raises(MissingLogsError, match=f"no carts logs for {small_logs['start']:%Y-%m-%d}") as err:
        run_join(small_logs["logs"], tmp_path, small_logs["start"].isoformat(), funnel=FUNNEL)
    assert "carts is a step of log_join.funnel" in str(err.value)


# --- log_join.funnel: the config rules.

def test_the_default_config_is_the_two_step_join():
    from configs import load_config
    join = load_config().log_join
    funnel = log_join.funnel_of(join["funnel"], join["attribution_window_days"])
    assert funnel == join_logic.default_funnel(int(join["attribution_window_days"] * DAY_US))
    assert funnel == join_logic.parse_funnel(None, join["attribution_window_days"])
    assert funnel.logs == ("impressions", "clicks", "conversions")
    assert funnel.longest_chain_window_us == 3 * DAY_US


def test_a_step_without_window_after_another_step_takes_the_default_window():
    funnel = join_logic.parse_funnel([{"log": "clicks", "label": "click"},
                                      {"log": "carts", "label": "cart", "after": "click"},
                                      {"log": "conversions", "label": "conversion", "after": "cart",
                                       "attribution_window_days": 0.5}], 2)
    assert [s.window_us for s in funnel.steps] == [None, 2 * DAY_US, DAY_US // 2]
    assert funnel.chain_window_us("conversion") == funnel.longest_chain_window_us == 2 * DAY_US + DAY_US // 2


@pytest.mark.parametrize("steps, message", [
    ([{"log": "clicks", "label": "click"}, {"log": "conversions", "label": "conversion", "after": "cart"},
      {"log": "carts", "label": "cart", "after": "click"}],
     r"funnel\[1\] \(log 'conversions'\): `after: cart` names no earlier step"),
    ([{"log": "clicks", "label": "click", "after": "click"}], r"`after: click` names no earlier step"),
    ([{"log": "clicks", "label": "click"}, {"log": "carts", "label": "click", "after": "click"}],
     r"funnel\[1\] \(log 'carts'\): duplicate label 'click'"),
    ([{"log": "clicks", "label": "click"}, {"log": "likes", "label": "like"}], r"unknown log 'likes'"),
    ([{"log": "clicks", "label": "click"}, {"log": "clicks", "label": "click2"}], r"log 'clicks' appears twice"),
    ([{"log": "clicks", "label": "scene"}], r"label 'scene' is a column of the impressions"),
    ([{"log": "impressions", "label": "seen"}], r"the impressions are the funnel's root"),
    ([{"log": "clicks", "label": "click", "window": 1}], r"unknown key\(s\) \['window'\]"),
    ([{"log": "clicks", "label": "click", "attribution_window_days": -1}], r"attribution_window_days must be"),
    ([], r"non-empty list"),
])
def test_a_bad_funnel_is_a_clear_error(steps, message):
    with pytest.raises(ValueError, match=message):
        log_join.funnel_of(steps, 3.0)


def test_the_component_checks_its_funnel_when_the_pipeline_is_built():
    from configs import load_config
    config = load_config()
    kwargs = dict(logs_root="/nowhere", run_date="2026-11-20", label_delay_days=0, attribution_window_days=3.0,
                  eval_percent=20, max_quarantine_fraction=0.01, raw_schema_path=config.raw_events_path)
    with pytest.raises(ValueError, match="unknown log 'likes'"):
        log_join.LogJoinExampleGen(funnel=[{"log": "likes", "label": "like"}], **kwargs)
    component = log_join.LogJoinExampleGen(funnel=FUNNEL, **kwargs)
    assert json.loads(component.exec_properties["funnel"])[1]["log"] == "carts"
    assert log_join.LogJoinExampleGen(**kwargs).exec_properties.get("funnel") is None


def test_the_three_step_example_in_the_config_parses():
    """The commented three-step funnel in configs/pipeline.yaml is a valid funnel."""
    from configs import DEFAULT_CONFIG
    with open(DEFAULT_CONFIG) as fh:
        text = fh.read()
    block = text[text.index("#   funnel:"):].splitlines()[:4]
    example = textwrap.dedent("\n".join(line.split("#", 1)[1] for line in block))
    funnel = log_join.funnel_of(yaml.safe_load(example)["funnel"], 3)
    assert funnel.labels == ("click", "cart", "conversion")
