"""Reading one partition of a raw event log and sorting its rows into good and quarantined.

Validation is vectorised with pyarrow per row group; the rules come from
``schemas/raw_events.yaml`` so the generator, the join and the docs agree.

Files are listed and opened through Beam's filesystem abstraction (``FileSystems``), never
``os``/``glob``/a local path: the launcher plans the chunks and the Beam workers read them, and
on a cluster the logs root is ``gs://``, ``s3://`` or ``hdfs://``, which both resolve the same way.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas import DAY_US, EPOCH, load_raw_schema, partition_dir  # noqa: F401  (re-exported)

_ARROW_TYPES = {"string": pa.string(), "int64": pa.int64(), "double": pa.float64(),
                "timestamp": pa.timestamp("us", tz="UTC")}


class MissingLogsError(FileNotFoundError):
    """A required day of logs is absent: the run must fail, never fall back to another day."""


def list_partition(logs_root: str, log: str, date: dt.date) -> List[str]:
    path = partition_dir(logs_root, log, date)
    [matched] = FileSystems.match([FileSystems.join(path, "*.parquet")])
    files = sorted(m.path for m in matched.metadata_list)
    # An object store has no empty directories: there, no file is no partition.
    if not files and not FileSystems.exists(path):
        raise MissingLogsError(
            f"no {log} logs for {date:%Y-%m-%d}: directory {path} does not exist. Land that day's "
            f"logs (or generate them with `rankpipe generate-logs`) and rerun; a run never falls "
            f"back to another day.")
    return files


def _open(path: str):
    return FileSystems.open(path, mime_type="application/octet-stream",
                            compression_type=CompressionTypes.UNCOMPRESSED)


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One unit of reading work: a row group of one file of one log partition."""
    log: str
    path: str
    date: str          # partition date, YYYY-MM-DD
    row_group: int     # -1: the whole file could not be opened
    rows: int = 0      # rows in the row group, from the Parquet footer (0 if unreadable)


def plan_chunks(logs_root: str, log: str, date: dt.date) -> List[Chunk]:
    chunks = []
    for path in list_partition(logs_root, log, date):
        try:
            with _open(path) as fh:
                meta = pq.ParquetFile(fh).metadata
            chunks.extend(Chunk(log, path, f"{date:%Y-%m-%d}", i, meta.row_group(i).num_rows)
                          for i in range(meta.num_row_groups))
        except Exception:  # noqa: BLE001 - any unreadable file is quarantined, not fatal
            chunks.append(Chunk(log, path, f"{date:%Y-%m-%d}", -1))
    return chunks


def _quarantine_rows(chunk: Chunk, table: pa.Table | None, mask: np.ndarray | None,
                     reason: str) -> Iterator[Dict[str, Any]]:
    if table is None:
        yield {"log": chunk.log, "file": chunk.path, "row": None, "reason": reason, "values": None,
               "rows": 1}
        return
    idx = np.flatnonzero(mask) if mask is not None else np.arange(table.num_rows)
    if idx.size == 0:
        return
    values = table.take(pa.array(idx)).to_pylist()
    for i, row in zip(idx, values):
        yield {"log": chunk.log, "file": chunk.path, "row": int(i), "reason": reason,
               "values": {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in row.items()},
               "rows": 1}


def _is_primitive(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def read_chunk(chunk: Chunk, schema_path: str | None = None
               ) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]], List[str]]:
    """``read_table`` with the good rows as dicts."""
    good, quarantine, notes = read_table(chunk, schema_path)
    return (good.to_pylist() if good is not None else []), quarantine, notes


def read_table(chunk: Chunk, schema_path: str | None = None
               ) -> Tuple[pa.Table | None, List[Dict[str, Any]], List[str]]:
    """Returns (good rows with int64-micro timestamps, or None; quarantine records; notes).

    A file that cannot be opened yields one quarantine record with ``row=None``
    (its rows cannot be counted: the record says so). Extra columns are noted,
    not dropped silently: they surface as schema drift in the run report.
    """
    schema = load_raw_schema(schema_path) if schema_path else load_raw_schema()
    fields: Dict[str, Dict[str, Any]] = schema["logs"][chunk.log]["fields"]
    if chunk.row_group < 0:
        return None, list(_quarantine_rows(chunk, None, None, "unreadable file: not a valid Parquet file")), []
    try:
        with _open(chunk.path) as fh:
            table = pq.ParquetFile(fh).read_row_group(chunk.row_group)
    except Exception as exc:  # noqa: BLE001
        return None, list(_quarantine_rows(chunk, None, None, f"unreadable row group {chunk.row_group}: {exc}")), []

    notes = [f"{chunk.log}: unexpected column '{c}' in {chunk.path}" for c in table.column_names if c not in fields]
    bad = np.zeros(table.num_rows, dtype=bool)
    quarantine: List[Dict[str, Any]] = []
    columns: Dict[str, pa.Array] = {}

    def reject(mask: np.ndarray, reason: str) -> None:
        new = mask & ~bad
        quarantine.extend(_quarantine_rows(chunk, table, new, reason))
        bad[:] |= mask

    for name, attrs in fields.items():
        want = _ARROW_TYPES[attrs["type"]]
        if name not in table.column_names:
            reject(np.ones(table.num_rows, dtype=bool), f"missing column '{name}'")
            continue
        col = table.column(name).combine_chunks()
        if not col.type.equals(want):
            try:
                col = col.cast(want)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                reject(np.ones(table.num_rows, dtype=bool),
                       f"column '{name}' has type {col.type}, expected {attrs['type']}")
                continue
        if attrs.get("required"):
            reject(col.is_null().to_numpy(zero_copy_only=False), f"missing required field '{name}'")
        if "allowed" in attrs:
            ok = pc.is_in(col, value_set=pa.array(attrs["allowed"], type=pa.string())).to_numpy(zero_copy_only=False)
            reject(~ok & ~col.is_null().to_numpy(zero_copy_only=False), f"unknown {name} (allowed: {', '.join(attrs['allowed'])})")
        if "min" in attrs:
            below = pc.less(col, attrs["min"]).to_numpy(zero_copy_only=False)
            reject(np.nan_to_num(below.astype(float)).astype(bool), f"{name} below {attrs['min']}")
        if attrs["type"] == "double":
            nan = pc.is_nan(col).to_numpy(zero_copy_only=False)
            reject(np.nan_to_num(nan.astype(float)).astype(bool), f"{name} is NaN")
        if attrs["type"] == "timestamp":
            col = col.cast(pa.int64())
            day = (dt.date.fromisoformat(chunk.date) - EPOCH).days
            ts = col.to_numpy(zero_copy_only=False)
            ts = np.nan_to_num(ts.astype(float), nan=day * DAY_US)
            reject((ts < day * DAY_US) | (ts >= (day + 1) * DAY_US), f"{name} outside partition day {chunk.date}")
        columns[name] = col
    if bad.all() or not columns or len(columns) < len(fields):
        return None, quarantine, notes
    # Unknown columns travel on into the examples, where ExampleValidator reports them
    # against the curated schema (schema drift stops the run before training).
    for name in table.column_names:
        if name not in fields and _is_primitive(table.column(name).type):
            columns[name] = table.column(name).combine_chunks()
    return pa.table(columns).filter(pa.array(~bad)), quarantine, notes
