"""Join semantics, free of Beam so they can be tested directly: ``join_impression`` states the
rules for one impression id (the specification); ``join_tables`` applies them to every id of a
hash bucket at once on Arrow columns (what the pipeline runs; a property test holds them equal).

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
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Counts = Dict[str, int]


def _first(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    # Deterministic whatever order Beam delivers: earliest timestamp, then row content.
    return min(rows, key=_first_key)


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


# --- Hashing: one 64-bit hash per impression id, computed on whole Arrow columns. ---
# Split, shuffle bucket and write order all derive from it, so a row costs no Python call.

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def _fmix64(h: np.ndarray) -> np.ndarray:
    # MurmurHash3's finaliser (Appleby, 2011): FNV-1a's low bits are weak; bucket = h % B needs them mixed.
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def id_hashes(ids: Union[pa.Array, pa.ChunkedArray, Sequence[str]]) -> np.ndarray:
    """FNV-1a over each id's UTF-8 bytes, then mixed: deterministic on every worker and run
    (unlike Python's hash()), and vectorised over the column's data buffer (0.25 s per
    million ids on one core, where hashlib per row took 1.3 s)."""
    if not isinstance(ids, (pa.Array, pa.ChunkedArray)):
        ids = pa.array(list(ids), type=pa.string())
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if ids.null_count:
        raise ValueError("impression ids must not be null (the reader quarantines rows without one)")
    ids = ids.cast(pa.large_binary())
    n = len(ids)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    _, offsets_buf, data_buf = ids.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64, count=n + 1, offset=ids.offset * 8)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        if lengths.min() == lengths.max():   # the usual case: fixed-width ids, no masks
            width = int(lengths[0])
            block = data[offsets[0]:offsets[0] + n * width].reshape(n, width).astype(np.uint64)
            for j in range(width):
                h = (h ^ block[:, j]) * _FNV_PRIME
        else:
            starts = offsets[:-1]
            for j in range(int(lengths.max())):
                live = np.flatnonzero(lengths > j)
                h[live] = (h[live] ^ data[starts[live] + j].astype(np.uint64)) * _FNV_PRIME
        return _fmix64(h)


def eval_mask(hashes: np.ndarray, eval_percent: int) -> np.ndarray:
    # The high half of the hash; the low half picks the bucket, so the two are independent.
    return (hashes >> np.uint64(32)) % np.uint64(100) < np.uint64(eval_percent)


def split_of(impression_id: str, eval_percent: int) -> str:
    """Stable train/eval assignment: the same impression lands in the same split on every rerun."""
    return "eval" if eval_mask(id_hashes([impression_id]), eval_percent)[0] else "train"


ROWS_PER_WRITE_BUCKET = 2000
MAX_WRITE_BUCKETS = 4096


def write_order_buckets(impressions: int) -> int:
    """How many hash buckets the day is joined and written in: about ROWS_PER_WRITE_BUCKET
    impressions each. Each bucket is one unit of the join's shuffle and is written contiguously,
    in hash order. Beam emits the buckets in the order it meets them; thousands of rows per
    bucket make every bucket a sample of the day. The cap bounds the rows one worker holds
    (a billion-row day: ~250k per bucket)."""
    return max(1, min(MAX_WRITE_BUCKETS, int(impressions) // ROWS_PER_WRITE_BUCKET))


def write_order_key(impression_id: str) -> int:
    """Where an example goes in its bucket: the hash of its id, so the order is deterministic and
    independent of its labels. Beam's group order on the DirectRunner put every clicked impression
    first, and the Trainer's shuffle buffer is smaller than a multi-span window: with that order,
    the last steps of an epoch saw almost no clicks and the model under-predicted by 22 % on a
    3-span window."""
    return int(id_hashes([impression_id])[0])


def write_order_bucket(impression_id: str, buckets: int) -> int:
    return int(id_hashes([impression_id])[0] % np.uint64(buckets))


def bucket_of(hashes: np.ndarray, buckets: int) -> np.ndarray:
    return (hashes % np.uint64(buckets)).astype(np.int64)


# --- The join on Arrow tables: the same rules as join_impression, for every id of a bucket at once. ---

def empty_events() -> pa.Table:
    return pa.table({"impression_id": pa.array([], pa.string()), "timestamp": pa.array([], pa.int64())})


def _first_key(row: Dict[str, Any]):
    return (row["timestamp"], sorted((k, str(v)) for k, v in row.items()))


def _dedupe_impressions(impressions: pa.Table) -> Tuple[pa.Table, int]:
    """One row per impression id, chosen as ``_first`` chooses; returns (rows, duplicates)."""
    n = impressions.num_rows
    order = pc.sort_indices(impressions, sort_keys=[("impression_id", "ascending"), ("timestamp", "ascending")])
    imps = impressions.take(order)
    ids = imps.column("impression_id").combine_chunks()
    if n == 0:
        return imps, 0
    new_id = np.ones(n, dtype=bool)
    if n > 1:
        new_id[1:] = pc.not_equal(ids.slice(1), ids.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(new_id)
    sizes = np.diff(np.append(starts, n))
    keep = starts.copy()
    ts = imps.column("timestamp").to_numpy()
    for g in np.flatnonzero(sizes > 1):   # duplicates are rare: the reference rule, row by row
        s, e = starts[g], starts[g] + sizes[g]
        if ts[s] != ts[s + 1]:            # sorted by timestamp: a unique earliest row wins
            continue
        rows = imps.slice(s, e - s).to_pylist()
        keep[g] = s + min(range(len(rows)), key=lambda i: _first_key(rows[i]))
    return imps.take(pa.array(keep)), n - len(starts)


def join_tables(impressions: pa.Table, clicks: Optional[pa.Table], conversions: Optional[pa.Table],
                attribution_window_us: int) -> Tuple[pa.Table, Counts]:
    """Labelled impressions (``timestamp`` dropped, ``click`` and ``conversion`` added) and the
    bucket counts, for the rows of a set of impression ids; every row is counted once, with the
    rules of ``join_impression`` (a property test holds the two equal)."""
    counts: Counts = collections.Counter()
    clicks = clicks if clicks is not None else empty_events()
    conversions = conversions if conversions is not None else empty_events()
    kept, duplicates = _dedupe_impressions(impressions)
    imp_ids = kept.column("impression_id").combine_chunks()
    counts["impressions.joined"] += kept.num_rows
    counts["impressions.duplicate"] += duplicates

    c_ids = clicks.column("impression_id").combine_chunks()
    c_known = pc.is_in(c_ids, value_set=imp_ids).to_numpy(zero_copy_only=False)
    counts["clicks.orphan"] += int((~c_known).sum())
    first = (pa.table({"id": c_ids.filter(pa.array(c_known)),
                       "ts": clicks.column("timestamp").combine_chunks().filter(pa.array(c_known))})
             .group_by("id").aggregate([("ts", "min")]))
    clicked_ids = first.column("id").combine_chunks()
    counts["clicks.joined"] += len(clicked_ids)
    counts["clicks.duplicate"] += int(c_known.sum()) - len(clicked_ids)

    v_ids = conversions.column("impression_id").combine_chunks()
    v_ts = conversions.column("timestamp").to_numpy()
    at = pc.index_in(v_ids, value_set=clicked_ids)
    clicked = at.is_valid().to_numpy(zero_copy_only=False)
    counts["conversions.orphan"] += int((~clicked).sum())   # no impression, or never clicked
    first_click = (first.column("ts_min").to_numpy()[at.fill_null(0).to_numpy()]
                   if len(clicked_ids) and len(v_ids) else v_ts)   # unused where no click (masked below)
    in_window = clicked & (v_ts >= first_click) & (v_ts <= first_click + attribution_window_us)
    counts["conversions.out_of_window"] += int((clicked & ~in_window).sum())
    converted_ids = pc.unique(v_ids.filter(pa.array(in_window)))
    counts["conversions.joined"] += len(converted_ids)
    counts["conversions.duplicate"] += int(in_window.sum()) - len(converted_ids)

    out = kept.drop(["timestamp"])
    out = out.append_column("click", pc.is_in(imp_ids, value_set=clicked_ids).cast(pa.int64()))
    out = out.append_column("conversion", pc.is_in(imp_ids, value_set=converted_ids).cast(pa.int64()))
    return out, counts


def in_write_order(table: pa.Table, eval_percent: int) -> Dict[str, pa.Table]:
    """The bucket's labelled rows by split, each in hash order of the id (write_order_key)."""
    h = id_hashes(table.column("impression_id"))
    order = np.argsort(h, kind="stable")
    table, h = table.take(pa.array(order)), h[order]
    is_eval = eval_mask(h, eval_percent)
    return {"train": table.filter(pa.array(~is_eval)), "eval": table.filter(pa.array(is_eval))}
