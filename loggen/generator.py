"""Writes days of raw logs as Parquet, one partition per day of each event's timestamp.

A day's partitions are a pure function of (world seed, date): clicks and
conversions of earlier impressions that land on a day are regenerated from
those earlier days' seeds, so generating 2026-11-20 alone or as part of a
week gives byte-identical rows. That is what makes backfills testable.

With ``WorldConfig(carts=True)`` the funnel has three steps and a fourth log,
``carts`` (add-to-cart events on clicked impressions): a clicked impression is
carted with p_cart, a carted one converts with p_purchase, and every conversion
follows its impression's first cart. Those draws come from their own streams
where the two-step world has none, so impressions and clicks are the same with
or without carts, and the default (off) writes byte-identical logs and truth.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from loggen.world import World, WorldConfig
from schemas import DAY_US, EPOCH, RAW_EVENTS_PATH, load_raw_schema, partition_dir

US_PER_S = 1_000_000
# Conversions arrive at most this long after their click (the generator's own
# horizon; the join's attribution window is a separate, shorter setting).
MAX_CONVERSION_DELAY_DAYS = 7
REPEAT_CLICK_RATE = 0.03
# With carts: a cart follows its click within this horizon, and repeat adds to cart are this common.
MAX_CART_DELAY_DAYS = 1
REPEAT_CART_RATE = 0.05

# The truth files' columns (one row per impression). Two-step world: p_ctr = P(click | impression),
# p_cvr = P(conversion | click), p_ctcvr = P(conversion | impression) = p_ctr * p_cvr.
# With carts, also: p_cart = P(cart | click), p_purchase = P(conversion | cart),
# p_ctcart = P(cart | impression) = p_ctr * p_cart; there p_cvr = p_cart * p_purchase.
TRUTH_COLUMNS = ("impression_id", "scene", "p_ctr", "p_cvr", "p_ctcvr")
CART_TRUTH_COLUMNS = ("p_cart", "p_purchase", "p_ctcart")


def day_start_us(date: dt.date) -> int:
    return (date - EPOCH).days * DAY_US


@dataclasses.dataclass
class DayLogs:
    date: dt.date
    impressions: pd.DataFrame
    clicks: pd.DataFrame       # impression_id, timestamp (may fall on later days)
    conversions: pd.DataFrame  # impression_id, timestamp (may fall on later days)
    truth: pd.DataFrame        # TRUTH_COLUMNS (+ CART_TRUTH_COLUMNS with carts)
    carts: Optional[pd.DataFrame] = None  # with carts: impression_id, timestamp (may fall on later days)


def generate_day(world: World, date: dt.date, n_impressions: int) -> DayLogs:
    """All events caused by the impressions of ``date`` (clicks/conversions may spill over)."""
    rng = np.random.default_rng(np.random.SeedSequence([world.config.seed, 1, date.toordinal()]))
    n = int(n_impressions)
    scene = rng.choice(len(world.scene_share), n, p=world.scene_share)
    if world.population is None:
        user = rng.choice(world.config.n_users, n, p=world.user_weight)
        item = rng.choice(world.config.n_items, n, p=world.item_weight)
    else:  # each scene's impressions from its own user mixture and item pool
        user, item = np.empty(n, np.int64), np.empty(n, np.int64)
        for s in range(len(world.scene_share)):
            at = np.flatnonzero(scene == s)
            user[at] = rng.choice(world.config.n_users, at.size, p=world.population.user_p[s])
            item[at] = rng.choice(world.config.n_items, at.size, p=world.population.item_p[s])
    position = np.minimum(rng.geometric(0.2, n), 50)
    ts = day_start_us(date) + np.sort(rng.integers(0, DAY_US, n))
    p_ctr, p_cvr = world.true_probabilities(scene, user, item, position)

    ids = np.array([f"{date:%Y%m%d}-{i:08d}" for i in range(n)], dtype=object)
    scene_names = np.array(world.config.scene_names, dtype=object)
    impressions = pd.DataFrame({
        "impression_id": ids,
        "timestamp": ts,
        "scene": scene_names[scene],
        "user_id": world.user_names[user],
        "user_segment": world.segment_names[world.user_segment[user]],
        "device": world.device_names[world.user_device[user]],
        "item_id": world.item_names[item],
        "item_brand": world.brand_names[world.item_brand[item]],
        "item_category": world.category_names[world.item_category[item]],
        "item_price": world.item_price[item],
        "position": position.astype(np.int64),
    })

    clicked = rng.random(n) < p_ctr
    if world.config.carts:
        # The cart draws use their own stream; the purchase draw takes the conversion draw's place in
        # the day's stream, so impressions and clicks are those of the two-step world.
        cart_rng = np.random.default_rng(np.random.SeedSequence([world.config.seed, 3, date.toordinal()]))
        p_cart, p_purchase = world.true_cart_probabilities(scene, user, item)
        carted = clicked & (cart_rng.random(n) < p_cart)
        converted = carted & (rng.random(n) < p_purchase)
    else:
        converted = clicked & (rng.random(n) < p_cvr)
    click_idx = np.flatnonzero(clicked)
    click_ts = ts[click_idx] + (rng.exponential(20.0, click_idx.size) * US_PER_S).astype(np.int64) + US_PER_S
    repeat = rng.random(click_idx.size) < REPEAT_CLICK_RATE
    repeat_ts = click_ts[repeat] + (rng.exponential(60.0, repeat.sum()) * US_PER_S).astype(np.int64)
    clicks = pd.DataFrame({
        "impression_id": np.concatenate([ids[click_idx], ids[click_idx[repeat]]]),
        "timestamp": np.concatenate([click_ts, repeat_ts]),
    })

    first_click_ts = np.zeros(n, dtype=np.int64)
    first_click_ts[click_idx] = click_ts
    carts = None
    # Conversions are timed from the step before them: the first click, or with carts the first cart.
    parent_ts, horizon_us = first_click_ts, np.full(n, MAX_CONVERSION_DELAY_DAYS * DAY_US - US_PER_S)
    if world.config.carts:
        carts, first_cart_ts = _carts(cart_rng, ids, carted, first_click_ts)
        parent_ts = first_cart_ts
        horizon_us = horizon_us - (first_cart_ts - first_click_ts)   # a conversion stays within 7 days of its click
    conv_idx = np.flatnonzero(converted)
    # Most purchases follow within hours; a long tail arrives days later.
    slow = rng.random(conv_idx.size) < 0.3
    delay_s = np.where(slow, rng.exponential(1.5 * 86_400, conv_idx.size), rng.exponential(2 * 3600, conv_idx.size))
    delay_us = np.minimum((delay_s * US_PER_S).astype(np.int64), horizon_us[conv_idx])
    conversions = pd.DataFrame({
        "impression_id": ids[conv_idx],
        "timestamp": parent_ts[conv_idx] + delay_us + US_PER_S,
    })
    truth = pd.DataFrame({
        "impression_id": ids,
        "scene": scene_names[scene],
        "p_ctr": p_ctr,
        "p_cvr": p_cvr,
        "p_ctcvr": p_ctr * p_cvr,
    })
    if world.config.carts:
        truth["p_cvr"] = p_cart * p_purchase
        truth["p_ctcvr"] = p_ctr * p_cart * p_purchase
        truth["p_cart"] = p_cart
        truth["p_purchase"] = p_purchase
        truth["p_ctcart"] = p_ctr * p_cart
    return DayLogs(date, impressions, clicks, conversions, truth, carts)


def _carts(rng: np.random.Generator, ids: np.ndarray, carted: np.ndarray, first_click_ts: np.ndarray):
    """Add-to-cart events of the carted impressions (and a few repeats): (carts, first cart time per impression).
    Most carts follow the click within minutes; a tail comes back hours later, at most a day."""
    cart_idx = np.flatnonzero(carted)
    slow = rng.random(cart_idx.size) < 0.2
    delay_s = np.where(slow, rng.exponential(6 * 3600, cart_idx.size), rng.exponential(5 * 60, cart_idx.size))
    delay_us = np.minimum((delay_s * US_PER_S).astype(np.int64), MAX_CART_DELAY_DAYS * DAY_US - US_PER_S)
    cart_ts = first_click_ts[cart_idx] + delay_us + US_PER_S
    repeat = rng.random(cart_idx.size) < REPEAT_CART_RATE
    repeat_ts = cart_ts[repeat] + (rng.exponential(120.0, repeat.sum()) * US_PER_S).astype(np.int64)
    first_cart_ts = np.zeros(len(ids), dtype=np.int64)
    first_cart_ts[cart_idx] = cart_ts
    carts = pd.DataFrame({
        "impression_id": np.concatenate([ids[cart_idx], ids[cart_idx[repeat]]]),
        "timestamp": np.concatenate([cart_ts, repeat_ts]),
    })
    return carts, first_cart_ts


_ARROW = {"string": pa.string(), "int64": pa.int64(), "double": pa.float64(),
          "timestamp": pa.timestamp("us", tz="UTC")}


def _to_table(df: pd.DataFrame, fields: Optional[Dict[str, Dict]] = None) -> pa.Table:
    """Columns and types of a raw log come from the raw event schema (schemas/raw_events.yaml or the
    config's ``schemas.raw_events``), the one definition."""
    fields = fields if fields is not None else {c: {} for c in df.columns}
    cols = {}
    for name, attrs in fields.items():
        values = df[name].to_numpy()
        kind = attrs.get("type")
        if kind == "timestamp":
            cols[name] = pa.array(values.astype(np.int64), type=pa.int64()).cast(_ARROW[kind])
        else:
            cols[name] = pa.array(values, type=_ARROW.get(kind))
    return pa.table(cols)


def _write(df: pd.DataFrame, root: str, log: str, date: dt.date, schema: Dict[str, Any]) -> None:
    out = partition_dir(root, log, date)
    os.makedirs(out, exist_ok=True)
    pq.write_table(_to_table(df, schema["logs"][log]["fields"]), os.path.join(out, "part-00000.parquet"), compression="snappy")


def _event_day(ts_us: np.ndarray) -> np.ndarray:
    return ts_us // DAY_US


def write_days(logs_root: str, truth_root: str, start: dt.date, n_days: int, impressions_per_day: int,
               world_config: WorldConfig = WorldConfig(),
               progress: Optional[Callable[[str], None]] = print,
               raw_schema_path: str = RAW_EVENTS_PATH) -> Dict[str, int]:
    """Writes ``n_days`` days from ``start`` in the layout of the raw event schema at ``raw_schema_path``;
    returns row counts per log. With ``world_config.carts`` there is a ``carts`` log too (and the
    truth files have the cart columns, see CART_TRUTH_COLUMNS); without, no ``carts`` partition is written."""
    schema = load_raw_schema(raw_schema_path)
    world = World(world_config)
    first = (start - EPOCH).days
    last = first + n_days - 1
    event_logs = ("clicks", "carts", "conversions") if world_config.carts else ("clicks", "conversions")
    pending: Dict[str, List[pd.DataFrame]] = {log: [] for log in event_logs}
    counts = {"impressions": 0, **{log: 0 for log in event_logs}}
    for offset in range(-MAX_CONVERSION_DELAY_DAYS, n_days):
        date = start + dt.timedelta(days=offset)
        t0 = time.time()
        day = generate_day(world, date, impressions_per_day)
        if offset >= 0:
            _write(day.impressions, logs_root, "impressions", date, schema)
            tdir = os.path.join(truth_root, f"date={date:%Y-%m-%d}")
            os.makedirs(tdir, exist_ok=True)
            pq.write_table(_to_table(day.truth), os.path.join(tdir, "truth.parquet"))
            counts["impressions"] += len(day.impressions)
        for log in pending:
            df = getattr(day, log)
            days = _event_day(df["timestamp"].to_numpy())
            pending[log].append(df[(days >= first) & (days <= last)])
        if offset >= 0 and progress:
            progress(f"[loggen] {date} generated {len(day.impressions):,} impressions in {time.time() - t0:.1f}s")
    for log, frames in pending.items():
        df = pd.concat(frames, ignore_index=True)
        days = _event_day(df["timestamp"].to_numpy())
        for d in range(first, last + 1):
            part = df[days == d].sort_values(["timestamp", "impression_id"], kind="stable")
            _write(part.reset_index(drop=True), logs_root, log, EPOCH + dt.timedelta(days=d), schema)
            counts[log] += len(part)
    return counts
