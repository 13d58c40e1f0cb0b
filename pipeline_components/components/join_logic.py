"""Join semantics for one impression id, free of Beam so it can be tested directly.

Every input row lands in exactly one bucket:

- impressions: ``joined`` (the kept row) or ``duplicate`` (same id seen again);
- clicks: ``joined`` (the first click: click = 1), ``duplicate`` (more clicks on
  the same impression), ``orphan`` (no impression in this run);
- conversions: ``joined`` (first conversion inside the attribution window after
  the first click: conversion = 1), ``duplicate`` (more in-window conversions),
  ``out_of_window`` (before the click or later than the window), ``orphan``
  (no impression, or an impression that was never clicked).

Rows rejected before the join are counted as ``quarantined`` by the reader.
"""
from __future__ import annotations

import collections
import hashlib
from typing import Any, Dict, Iterable, List, Optional, Tuple

Counts = Dict[str, int]


def _first(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    # Deterministic whatever order Beam delivers: earliest timestamp, then row content.
    return min(rows, key=lambda r: (r["timestamp"], sorted((k, str(v)) for k, v in r.items())))


def join_impression(impressions: Iterable[Dict[str, Any]], clicks: Iterable[Dict[str, Any]],
                    conversions: Iterable[Dict[str, Any]], attribution_window_us: int
                    ) -> Tuple[Optional[Dict[str, Any]], Counts]:
    """Returns (labelled impression or None, bucket counts) for the rows of one impression id."""
    impressions, clicks, conversions = list(impressions), list(clicks), list(conversions)
    counts: Counts = collections.Counter()
    if not impressions:
        counts["clicks.orphan"] += len(clicks)
        counts["conversions.orphan"] += len(conversions)
        return None, counts

    kept = dict(_first(impressions))
    counts["impressions.joined"] += 1
    counts["impressions.duplicate"] += len(impressions) - 1

    click = 0
    conversion = 0
    if clicks:
        click = 1
        counts["clicks.joined"] += 1
        counts["clicks.duplicate"] += len(clicks) - 1
        first_click = min(c["timestamp"] for c in clicks)
        in_window = [c for c in conversions if first_click <= c["timestamp"] <= first_click + attribution_window_us]
        counts["conversions.out_of_window"] += len(conversions) - len(in_window)
        if in_window:
            conversion = 1
            counts["conversions.joined"] += 1
            counts["conversions.duplicate"] += len(in_window) - 1
    else:
        counts["conversions.orphan"] += len(conversions)

    kept.pop("timestamp", None)
    kept["click"] = click
    kept["conversion"] = conversion
    return kept, counts


def split_of(impression_id: str, eval_percent: int) -> str:
    """Stable train/eval assignment: the same impression lands in the same split on every rerun."""
    bucket = int.from_bytes(hashlib.md5(impression_id.encode("utf-8")).digest()[:4], "little") % 100
    return "eval" if bucket < eval_percent else "train"


ROWS_PER_WRITE_BUCKET = 2000
MAX_WRITE_BUCKETS = 4096


def write_order_buckets(impressions: int) -> int:
    """How many hash buckets a split is written in: about ROWS_PER_WRITE_BUCKET impressions each.
    Beam emits the buckets in the order it first meets them, which follows the join's output
    order (clicked impressions first): with few rows per bucket, the buckets holding a click
    would come first. Thousands of rows per bucket make every bucket a sample of the day; the cap
    bounds the rows one worker sorts (a billion-row day: ~250k per bucket)."""
    return max(1, min(MAX_WRITE_BUCKETS, int(impressions) // ROWS_PER_WRITE_BUCKET))


def write_order_key(impression_id: str) -> bytes:
    """Where an example goes in the written split: a hash of its id, so the order is deterministic and
    independent of its labels. Beam emits joined rows in group order (on the DirectRunner, every clicked
    impression first), and the Trainer's shuffle buffer is smaller than a multi-span window: with that
    order, the last steps of an epoch saw almost no clicks and the model under-predicted by 22 % on
    a 3-span window."""
    return hashlib.md5(b"write-order:" + impression_id.encode("utf-8")).digest()


def write_order_bucket(impression_id: str, buckets: int) -> int:
    return int.from_bytes(write_order_key(impression_id)[:4], "little") % buckets


def in_write_order(rows: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return sorted(rows, key=lambda r: write_order_key(r["impression_id"]))
