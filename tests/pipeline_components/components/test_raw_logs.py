"""Row-level validation of raw log files against schemas/raw_events.yaml."""
import datetime as dt

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline_components.components.raw_logs import Chunk, read_chunk

DAY = dt.date(2026, 11, 20)
T0 = pd.Timestamp("2026-11-20T12:00:00", tz="UTC")


def _impressions(n=4, **override):
    df = pd.DataFrame({
        "impression_id": [f"x{i}" for i in range(n)], "timestamp": [T0] * n, "scene": ["main_search"] * n,
        "user_id": ["u1"] * n, "user_segment": ["seg1"] * n, "device": ["ios"] * n, "item_id": ["i1"] * n,
        "item_brand": ["b1"] * n, "item_category": ["c1"] * n, "item_price": [9.5] * n, "position": [1] * n})
    for k, v in override.items():
        df[k] = v
    return df


def _read(tmp_path, df):
    path = str(tmp_path / "part.parquet")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    return read_chunk(Chunk("impressions", path, DAY.isoformat(), 0))


def test_each_bad_row_gets_exactly_one_reason(tmp_path):
    df = _impressions(6)
    df.loc[0, "user_id"] = None
    df.loc[1, "scene"] = "moon_base"
    df.loc[2, "item_price"] = -3.0
    df.loc[3, "timestamp"] = T0 + pd.Timedelta(days=1)
    df.loc[4, "position"] = 0
    good, quarantine, notes = _read(tmp_path, df)
    assert [r["impression_id"] for r in good] == ["x5"]
    reasons = {q["row"]: q["reason"] for q in quarantine}
    assert reasons == {0: "missing required field 'user_id'",
                       1: "unknown scene (allowed: main_search, shop_search, partner_app, promo_feed)",
                       2: "item_price below 0.0", 3: "timestamp outside partition day 2026-11-20",
                       4: "position below 1"}
    assert quarantine[1]["values"]["scene"] == "moon_base"
    assert good[0]["timestamp"] == T0.value // 1000  # int64 microseconds


def test_a_changed_type_quarantines_the_column_with_a_readable_reason(tmp_path):
    good, quarantine, _ = _read(tmp_path, _impressions(3, item_price=["cheap", "cheap", "dear"]))
    assert good == [] and len(quarantine) == 3
    assert quarantine[0]["reason"] == "column 'item_price' has type string, expected double"


def test_a_missing_column_quarantines_every_row(tmp_path):
    good, quarantine, _ = _read(tmp_path, _impressions(2).drop(columns=["device"]))
    assert good == [] and {q["reason"] for q in quarantine} == {"missing column 'device'"}


def test_unknown_columns_are_noted_and_carried_on_for_validation(tmp_path):
    good, quarantine, notes = _read(tmp_path, _impressions(2, coupon_code=["A", "B"]))
    assert not quarantine and [r["coupon_code"] for r in good] == ["A", "B"]
    assert notes and "coupon_code" in notes[0]


def test_an_unreadable_file_is_one_quarantine_record(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"garbage")
    good, quarantine, _ = read_chunk(Chunk("impressions", str(path), DAY.isoformat(), -1))
    assert good == [] and quarantine[0]["row"] is None and "unreadable" in quarantine[0]["reason"]
