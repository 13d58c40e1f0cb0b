"""Reading one day of labelled samples and sorting its rows into good and quarantined, free of Beam.

The rules come from a sample schema (``schemas/samples.py``): type, required, min, max, allowed
values, as ``raw_logs.read_table`` applies ``raw_events.yaml`` to raw logs, with the same reasons in
the same words; then the task funnel's label rules: a binary label is 0 or 1, and labels are nested
(a row whose task is 1 while the task it comes ``after`` is 0 is quarantined with a reason). The
quarantine records have raw_logs' shape (``log``, ``file``, ``row``, ``reason``, ``values``,
``rows``; ``row=None``: a file that could not be read at all).

Parquet is read per row group; CSV (a header row, then one sample per line) per file, every
declared column as text first, so one bad value quarantines its row and not the file (a line with
the wrong number of fields too). Files are listed and opened through Beam's ``FileSystems``
(``raw_logs`` says why): the samples root may be ``gs://``, ``s3://`` or ``hdfs://``.

Split hashing: ``row_hashes`` gives one 64-bit hash per row, of the declared id column, or else of
the row's declared columns' content (in name order, so the column order of a file does not matter,
and identical rows share a split). The split, the write bucket and the order in a bucket derive
from it with the log join's own functions (``join_logic.eval_mask``, ``bucket_of``), so the examples
are written in a label-independent order as the join writes them.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline_components.components import join_logic, raw_logs
from schemas.samples import SampleSchema, sample_partition_dir
from schemas.tasks import Funnel, parse_tasks

LOG = "samples"   # the ``log`` of quarantine records and the accounting key
_ARROW_TYPES = {"string": pa.string(), "int64": pa.int64(), "double": pa.float64()}
_PATTERNS = {"int64": r"^[+-]?\d{1,18}$",
             "double": r"^[+-]?((\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)$"}
CSV_BYTES_PER_ROW = 64   # only for the number of write buckets: a CSV's rows are not known before it is read


class MissingSamplesError(raw_logs.MissingLogsError):
    """The run's day of samples is absent: the run fails, never falls back to another day."""


class SampleSettingsError(ValueError):
    """The sample schema, the tasks and the settings do not fit together (found before any row is read)."""


@dataclasses.dataclass(frozen=True)
class SampleChunk:
    """One unit of reading work: a Parquet row group, or a whole CSV file."""
    path: str
    format: str
    date: str          # partition date, YYYY-MM-DD
    row_group: int     # Parquet: the row group; CSV: 0; -1: the file could not be opened
    rows: int = 0      # Parquet: rows in the row group; CSV: an estimate from the file size

    @property
    def log(self) -> str:  # raw_logs' quarantine records name the log
        return LOG


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a worker needs to validate rows (plain data: it travels to Beam workers pickled)."""
    schema: SampleSchema
    tasks: Tuple[Tuple[Tuple[str, Any], ...], ...]   # the funnel's config, hashable
    scene_column: str          # the examples' scene column (the feature spec's scene feature reads it)
    default_scene: str
    id_column: Optional[str] = None

    @functools.cached_property
    def funnel(self) -> Funnel:  # parsed once per worker's copy, not once per chunk
        return parse_tasks([dict(t) for t in self.tasks])


def make_settings(schema: SampleSchema, tasks: List[Dict[str, Any]], scene_column: str, default_scene: str,
                  id_column: Optional[str]) -> Settings:
    """Checks that the schema can carry the tasks, the scene and the id; raises SampleSettingsError."""
    funnel = parse_tasks(tasks)
    where = schema.path
    for task in funnel.tasks:
        field = schema.fields.get(task.label)
        if field is None:
            raise SampleSettingsError(f"task {task.name!r} learns from column {task.label!r}, which {where} does "
                                      f"not declare (declared: {sorted(schema.fields)})")
        if task.binary and field["type"] != "int64":
            raise SampleSettingsError(f"task {task.name!r} is binary: its label {task.label!r} must be an int64 "
                                      f"column of 0/1 in {where}, not {field['type']}")
        if not task.binary and field["type"] == "string":
            raise SampleSettingsError(f"task {task.name!r} is a regression: its label {task.label!r} must be "
                                      f"numeric in {where}")
        if not field.get("required"):
            # a row without its label would only fail later, in Transform or the Trainer's parsing
            raise SampleSettingsError(f"task {task.name!r} learns from column {task.label!r}: declare it "
                                      f"required in {where} (a row without it is quarantined)")
    if schema.scene_column is not None and schema.scene_column != scene_column:
        raise SampleSettingsError(f"{where} names the scene column {schema.scene_column!r}, but the feature spec's "
                                  f"scene feature reads {scene_column!r}: make them the same column")
    if schema.scene_column is None and scene_column in schema.fields:
        raise SampleSettingsError(f"{where} declares a column {scene_column!r} (the feature spec's scene column) but "
                                  f"no scene_column: declare scene_column and scenes, or rename the column "
                                  f"(every row is then in default scene {default_scene!r})")
    if schema.scene_column is None and not default_scene:
        raise SampleSettingsError(f"{where} declares no scene_column: input.samples.default_scene must name the "
                                  "one scene every row belongs to")
    if id_column is not None:
        field = schema.fields.get(id_column)
        if field is None:
            raise SampleSettingsError(f"input.samples.id_column {id_column!r} is not a column of {where}")
        if not field.get("required"):
            raise SampleSettingsError(f"input.samples.id_column {id_column!r} must be required in {where} (the split "
                                      "is a hash of it)")
    return Settings(schema=schema, tasks=tuple(tuple(sorted(t.items())) for t in funnel.as_config()),
                    scene_column=scene_column, default_scene=default_scene, id_column=id_column)


# --- Planning (on the launcher): the day's files, each cut into chunks. ---

def list_day(samples_root: str, date: dt.date, fmt: str) -> List[str]:
    path = sample_partition_dir(samples_root, date)
    [matched] = FileSystems.match([FileSystems.join(path, f"*.{fmt}")])
    files = sorted(m.path for m in matched.metadata_list)
    if files:
        return files
    if not FileSystems.exists(path):   # an object store has no empty directories: no file is no partition
        raise MissingSamplesError(
            f"no samples for {date:%Y-%m-%d}: directory {path} does not exist. Land that day's labelled rows "
            f"there (<samples root>/date=YYYY-MM-DD/*.{fmt}) and rerun; a run never falls back to another day.")
    [others] = FileSystems.match([FileSystems.join(path, "*")])
    found = sorted(FileSystems.split(m.path)[1] for m in others.metadata_list)[:5]
    raise MissingSamplesError(
        f"no *.{fmt} samples for {date:%Y-%m-%d} in {path} (input.samples.format is {fmt}; "
        f"found {found or 'nothing'}); a run never falls back to another day.")


def plan_chunks(samples_root: str, date: dt.date, fmt: str) -> List[SampleChunk]:
    day = f"{date:%Y-%m-%d}"
    chunks: List[SampleChunk] = []
    for path in list_day(samples_root, date, fmt):
        if fmt == "csv":
            [matched] = FileSystems.match([path])
            size = matched.metadata_list[0].size_in_bytes if matched.metadata_list else 0
            chunks.append(SampleChunk(path, fmt, day, 0, max(1, size // CSV_BYTES_PER_ROW)))
            continue
        try:
            with raw_logs._open(path) as fh:
                meta = pq.ParquetFile(fh).metadata
            chunks.extend(SampleChunk(path, fmt, day, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups))
        except Exception:  # noqa: BLE001 - an unreadable file is counted and fails the day, with its path
            chunks.append(SampleChunk(path, fmt, day, -1))
    return chunks


# --- Reading and validating one chunk (on a worker). ---

@dataclasses.dataclass
class ChunkResult:
    good: Optional[pa.Table]                 # the valid rows, typed as declared (+ the default scene column)
    quarantine: List[Dict[str, Any]]         # one record per quarantined row (row=None: unreadable file)
    notes: List[str]
    input_rows: int                          # rows read (a malformed CSV line counts as one)

    @property
    def unreadable(self) -> int:
        return sum(1 for q in self.quarantine if q["row"] is None)


def _unreadable(chunk: SampleChunk, reason: str) -> ChunkResult:
    return ChunkResult(None, list(raw_logs._quarantine_rows(chunk, None, None, reason)), [], 0)


def _read_csv(chunk: SampleChunk, schema: SampleSchema) -> Tuple[pa.Table, List[Dict[str, Any]]]:
    malformed: List[Dict[str, Any]] = []

    def on_invalid(row) -> str:
        malformed.append({"log": LOG, "file": chunk.path, "row": None if row.number is None else row.number - 2,
                          "line": row.number, "values": {"text": row.text}, "rows": 1,
                          "reason": f"malformed CSV line: {row.actual_columns} fields, expected {row.expected_columns}"})
        return "skip"

    with raw_logs._open(chunk.path) as fh:
        data = fh.read()
    table = pacsv.read_csv(
        pa.py_buffer(data), read_options=pacsv.ReadOptions(use_threads=False),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        # Every declared column as text: a bad value quarantines its row, not the whole file.
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in schema.fields},
                                             strings_can_be_null=True, null_values=[""]))
    for m in malformed:   # row=None is reserved for an unreadable file
        m["row"] = -1 if m["row"] is None else m["row"]
    return table, malformed


def _parse_text(col: pa.Array, kind: str) -> Tuple[pa.Array, np.ndarray]:
    """Text to int64/double row by row: (typed column, null where a value did not parse; mask of those)."""
    text = pc.utf8_trim_whitespace(col)
    ok = pc.match_substring_regex(text, _PATTERNS[kind], ignore_case=True).fill_null(False)
    typed = pc.if_else(ok, text, pa.scalar(None, pa.string())).cast(_ARROW_TYPES[kind])
    bad = col.is_valid().to_numpy(zero_copy_only=False) & ~ok.to_numpy(zero_copy_only=False)
    return typed, bad


def _mask(values: pa.Array) -> np.ndarray:
    """A boolean array with nulls as False."""
    return values.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


def validate(table: pa.Table, chunk: SampleChunk, settings: Settings) -> ChunkResult:
    """The rows of ``table`` (one chunk) against the schema and the tasks' label rules."""
    fields = settings.schema.fields
    n = table.num_rows
    notes = [f"{LOG}: unexpected column '{c}' in {chunk.path}" for c in table.column_names if c not in fields]
    if settings.schema.scene_column is None and settings.scene_column in table.column_names:
        raise SampleSettingsError(
            f"{chunk.path} has a column {settings.scene_column!r} (the feature spec's scene column) but "
            f"{settings.schema.path} declares no scene_column: declare it (scene_column, scenes) or drop the column")
    bad = np.zeros(n, dtype=bool)
    quarantine: List[Dict[str, Any]] = []
    columns: Dict[str, pa.Array] = {}

    def reject(mask: np.ndarray, reason: str) -> None:
        new = mask & ~bad
        quarantine.extend(raw_logs._quarantine_rows(chunk, table, new, reason))
        bad[:] |= mask

    for name, attrs in fields.items():
        want = _ARROW_TYPES[attrs["type"]]
        if name not in table.column_names:
            if attrs.get("required"):
                reject(np.ones(n, dtype=bool), f"missing column '{name}'")
            columns[name] = pa.nulls(n, type=want)
            continue
        col = table.column(name).combine_chunks()
        if pa.types.is_null(col.type):
            col = pa.nulls(n, type=want)
        if not col.type.equals(want):
            if attrs["type"] != "string" and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                col, unparsed = _parse_text(col.cast(pa.string()), attrs["type"])
                reject(unparsed, f"column '{name}' has a value that is not {attrs['type']}")
            else:
                try:
                    col = col.cast(want)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    reject(np.ones(n, dtype=bool), f"column '{name}' has type {col.type}, expected {attrs['type']}")
                    columns[name] = pa.nulls(n, type=want)
                    continue
        null = col.is_null().to_numpy(zero_copy_only=False)
        if attrs.get("required"):
            reject(null, f"missing required field '{name}'")
        if attrs["type"] == "double":
            reject(_mask(pc.is_nan(col)), f"{name} is NaN")
            reject(_mask(pc.is_inf(col)), f"{name} is infinite")
        if "allowed" in attrs:
            ok = _mask(pc.is_in(col, value_set=pa.array(attrs["allowed"], type=want)))
            reject(~ok & ~null, f"unknown {name} (allowed: {', '.join(str(v) for v in attrs['allowed'])})")
        if "min" in attrs:
            reject(_mask(pc.less(col, attrs["min"])), f"{name} below {attrs['min']}")
        if "max" in attrs:
            reject(_mask(pc.greater(col, attrs["max"])), f"{name} above {attrs['max']}")
        columns[name] = col

    funnel = settings.funnel
    for task in funnel.tasks:
        label = columns[task.label]
        if task.binary:
            reject(_mask(pc.and_(label.is_valid(), pc.invert(pc.is_in(label, value_set=pa.array([0, 1], label.type))))),
                   f"label '{task.label}' of task '{task.name}' is not 0 or 1")
    for task in funnel.tasks:
        parent = funnel.parent(task.name)
        if parent is None:
            continue
        child, given = columns[task.label], columns[parent.label]
        happened = pc.not_equal(child, 0)
        reject(_mask(pc.and_(happened, pc.equal(given, 0))),
               f"label '{task.label}' of task '{task.name}' is set where its parent task '{parent.name}' "
               f"('{parent.label}') is 0: labels must be nested (task {task.name} comes after {parent.name})")

    if settings.schema.scene_column is None:
        columns[settings.scene_column] = pa.array([settings.default_scene] * n, type=pa.string())
    # Unknown columns travel on into the examples, where ExampleValidator reports them against the
    # curated schema (schema drift stops the run before training), as in the log join.
    for name in table.column_names:
        if name not in fields and raw_logs._is_primitive(table.column(name).type):
            columns[name] = table.column(name).combine_chunks()
    good = pa.table(columns).filter(pa.array(~bad)) if n else None
    return ChunkResult(good if good is not None and good.num_rows else None, quarantine, notes, n)


def _to_file_rows(quarantine: List[Dict[str, Any]], malformed: List[Dict[str, Any]], parsed: int) -> None:
    """``validate`` numbers rows in the parsed table, which has no malformed CSV lines: each such
    line before a row shifts it by one. Renumbered here to the file's data rows (what ``row`` of a
    malformed line is), so every record points at its own line (line = row + 2, after the header)."""
    skipped = sorted(m["row"] for m in malformed if m["row"] >= 0)
    if not skipped:
        return
    file_rows = np.setdiff1d(np.arange(parsed + len(skipped)), skipped)
    for q in quarantine:
        if q["row"] is not None:
            q["row"] = int(file_rows[q["row"]])


def read_chunk(chunk: SampleChunk, settings: Settings) -> ChunkResult:
    """Reads and validates one chunk; a file that cannot be read is one quarantine record with row=None."""
    if chunk.row_group < 0:
        return _unreadable(chunk, f"unreadable file: not a valid {chunk.format} file")
    try:
        if chunk.format == "csv":
            table, malformed = _read_csv(chunk, settings.schema)
        else:
            with raw_logs._open(chunk.path) as fh:
                table, malformed = pq.ParquetFile(fh).read_row_group(chunk.row_group), []
    except Exception as exc:  # noqa: BLE001 - counted, reported with the file, and fails the day
        what = "file" if chunk.format == "csv" else f"row group {chunk.row_group}"
        return _unreadable(chunk, f"unreadable {what}: {exc}")
    result = validate(table, chunk, settings)
    _to_file_rows(result.quarantine, malformed, result.input_rows)
    result.quarantine = malformed + result.quarantine
    result.input_rows += len(malformed)
    return result


# --- Hashing (the split and the write order). ---

def row_hashes(table: pa.Table, settings: Settings) -> np.ndarray:
    """One 64-bit hash per row: of the id column if declared, else of the declared columns' values."""
    if settings.id_column is not None:
        return join_logic.id_hashes(table.column(settings.id_column).combine_chunks().cast(pa.string()))
    names = sorted(settings.schema.fields)
    parts = [table.column(n).combine_chunks().cast(pa.string()) for n in names]
    content = pc.binary_join_element_wise(*parts, "\x1f", null_handling="replace", null_replacement="\x00")
    return join_logic.id_hashes(content)
