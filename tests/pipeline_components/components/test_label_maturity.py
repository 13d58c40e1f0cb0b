"""Delayed feedback: run T labels the impressions of T-k with events through T, nothing later."""
import datetime as dt
import os
import shutil

import pandas as pd
import pytest

from loggen import write_days
from tests.pipeline_components.components.join_helpers import WINDOW_DAYS, read_examples, run_join

D0 = dt.date(2026, 11, 10)
K = 3
T = D0 + dt.timedelta(days=K + 1)        # the run's logical date
SPAN_DATE = T - dt.timedelta(days=K)      # the impressions it labels


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("maturity")
    write_days(str(root / "all"), str(root / "truth"), D0, K + 4, 6000, progress=None)
    # What the scheduled run saw: partitions only through T.
    daily = root / "through_T"
    for log in ("impressions", "clicks", "conversions"):
        for d in range(K + 2):
            day = D0 + dt.timedelta(days=d)
            shutil.copytree(root / "all" / log / f"date={day:%Y-%m-%d}", daily / log / f"date={day:%Y-%m-%d}")
    return root


def _labels(logs_root, out, delay):
    examples, _ = run_join(logs_root, out, T.isoformat(), delay=delay)
    return examples, read_examples(examples.uri).set_index("impression_id").sort_index()


def test_daily_run_and_later_backfill_give_the_same_labels(logs, tmp_path):
    daily_examples, daily = _labels(str(logs / "through_T"), tmp_path / "daily", K)
    _, backfill = _labels(str(logs / "all"), tmp_path / "backfill", K)   # days after T exist now
    pd.testing.assert_frame_equal(daily[["click", "conversion"]], backfill[["click", "conversion"]])
    assert daily_examples.span == (SPAN_DATE - dt.date(1970, 1, 1)).days
    assert set(daily.index.str[:8]) == {f"{SPAN_DATE:%Y%m%d}"}


def test_labels_use_conversions_from_every_day_through_T(logs, tmp_path):
    _, got = _labels(str(logs / "all"), tmp_path / "mature", K)
    read = lambda log, days: pd.concat([pd.read_parquet(logs / "all" / log / f"date={SPAN_DATE + dt.timedelta(days=d):%Y-%m-%d}")  # noqa: E731
                                        for d in days])
    clicks = read("clicks", range(K + 1))
    conv = read("conversions", range(K + 1))
    first = clicks.groupby("impression_id")["timestamp"].min().rename("click_ts")
    conv = conv.join(first, on="impression_id", how="inner")
    ok = conv[(conv.timestamp >= conv.click_ts) & (conv.timestamp <= conv.click_ts + pd.Timedelta(days=WINDOW_DAYS))]
    ok = ok[ok["impression_id"].isin(got.index)]  # events of later days' impressions are not this span's
    want = got.index.isin(ok["impression_id"]).astype(int)
    assert (got["conversion"].to_numpy() == want).all()
    late = ok[ok.timestamp.dt.date > SPAN_DATE]
    assert len(late) > 0  # some labels exist only because later days were read
    assert got.loc[late["impression_id"].unique(), "conversion"].eq(1).all()


def test_an_immature_day_has_fewer_conversions(logs, tmp_path):
    """Labelling day T-k the same day (k = 0) misses the conversions that arrive later."""
    examples, _ = run_join(str(logs / "all"), tmp_path / "immature", SPAN_DATE.isoformat(), delay=0)
    immature = read_examples(examples.uri)
    _, mature = _labels(str(logs / "all"), tmp_path / "mature2", K)
    assert immature["conversion"].sum() < mature["conversion"].sum()
    assert immature["click"].sum() <= mature["click"].sum()


def test_missing_event_day_inside_the_window_fails(logs, tmp_path):
    broken = tmp_path / "logs"
    shutil.copytree(logs / "all", broken)
    shutil.rmtree(broken / "conversions" / f"date={SPAN_DATE + dt.timedelta(days=2):%Y-%m-%d}")
    with pytest.raises(FileNotFoundError, match="no conversions logs for"):
        run_join(str(broken), tmp_path / "out", T.isoformat(), delay=K)
