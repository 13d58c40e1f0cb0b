"""LogJoinExampleGen: one day of raw impressions and their funnel logs to labelled Examples.

Why a custom component: TFX's ExampleGens turn *one* input source into
examples; labelling an impression needs a key join of several logs (with
attribution windows, duplicates, orphans and quarantine) before any example
exists. The label logs are a funnel (``log_join.funnel``; join_logic.parse_funnel):
by default clicks (label ``click``) then conversions (label ``conversion``, within
``attribution_window_days`` of the first click); a three-step funnel adds e.g. carts
between them. Every step's label is one int64 column of the examples. Its output
is a standard ``Examples`` artifact (TFRecord of tf.Example, splits
``train``/``eval``, ``span`` set), so StatisticsGen, Transform, Trainer and
Evaluator consume it unchanged.

Why it does not use FileBasedExampleGen's span resolution: with a ``{SPAN}``
pattern and no range config that driver silently picks the *latest* span, so a
backfill of an old date would train on today's data. Here the span is the
run's date (days since 1970-01-01), passed explicitly, and a missing day is an
error that names the path and the date.

Label maturity: the run for date T labels the impressions of day
T - ``label_delay_days`` with the events of every funnel log logged from that
day through T. With the same T the labels are identical whether the run is the
scheduled one or a later backfill. Labels are fully mature when
``label_delay_days`` covers the longest chain of windows (the join report's
``longest_chain_window_days``: 3 by default, cart window + conversion window in
a three-step funnel).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.types import artifact, artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx_bsl.coders import example_coder

from pipeline_components.components import beam_dependencies
from pipeline_components.components import join_beam, join_logic, raw_logs, tfrecord_blocks
from pipeline_components.spans import date_to_span, parse_run_date
from schemas import RAW_EVENTS_PATH, load_raw_schema

beam_dependencies.install()

LOGS = join_beam.LOGS
DAY_US = raw_logs.DAY_US


class JoinReport(artifact.Artifact):
    """Row accounting, quarantined rows and notes of one log-join run."""
    TYPE_NAME = "rankpipe.JoinReport"


class QuarantineThresholdError(RuntimeError):
    pass


class AccountingError(RuntimeError):
    pass


class LogJoinSpec(types.ComponentSpec):
    PARAMETERS = {
        "logs_root": ExecutionParameter(type=str),
        "run_date": ExecutionParameter(type=str),
        "label_delay_days": ExecutionParameter(type=int),
        "attribution_window_days": ExecutionParameter(type=float),
        "eval_percent": ExecutionParameter(type=int),
        "max_quarantine_fraction": ExecutionParameter(type=float),
        "raw_schema_path": ExecutionParameter(type=str, optional=True),
        # Where a failed join's quarantined rows and accounting are copied (paths.evidence).
        "evidence_root": ExecutionParameter(type=str, optional=True),
        # log_join.funnel as JSON (join_logic.parse_funnel); absent: the default funnel.
        "funnel": ExecutionParameter(type=str, optional=True),
    }
    INPUTS: Dict[str, ChannelParameter] = {}
    OUTPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "join_report": ChannelParameter(type=JoinReport),
    }


class _ReadChunk(beam.DoFn):
    """Reads one chunk, validates it (raw_logs.read_table) and splits its good rows by join bucket."""

    def __init__(self, schema_path: Optional[str], buckets: int):
        super().__init__()
        self._schema_path = schema_path
        self._buckets = buckets

    def process(self, chunk: raw_logs.Chunk):
        table, quarantine, notes = raw_logs.read_table(chunk, self._schema_path)
        good = table.num_rows if table is not None else 0
        n_input = good + sum(q["rows"] for q in quarantine if q["row"] is not None)
        yield beam.pvalue.TaggedOutput("counts", (f"{chunk.log}.input", n_input))
        for q in quarantine:
            if q["row"] is None:
                yield beam.pvalue.TaggedOutput("counts", (f"{chunk.log}.unreadable_files", 1))
            else:
                yield beam.pvalue.TaggedOutput("counts", (f"{chunk.log}.quarantined", 1))
            yield beam.pvalue.TaggedOutput("counts", (f"reason.{chunk.log}: {q['reason']}", q["rows"]))
            yield beam.pvalue.TaggedOutput("quarantine", json.dumps(q, sort_keys=True, default=str))
        for note in notes:
            yield beam.pvalue.TaggedOutput("notes", note)
        if good:
            yield from join_beam.partition(chunk.log, table, self._buckets)


def list_column(col: pa.Array) -> pa.Array:
    """One value per row as a list array (tf.Example features are lists); nulls become empty lists."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = col.cast(pa.binary())
    elif pa.types.is_floating(col.type):
        col = col.cast(pa.float32())
    elif pa.types.is_boolean(col.type):
        col = col.cast(pa.int64())
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(valid)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), col.filter(pa.array(valid)))


def encode_table(table: pa.Table) -> List[bytes]:
    """Serialises labelled rows with tfx_bsl's C++ encoder (5x faster than building protos in Python)."""
    # A column that is null in every row has no type to encode: those rows lack it.
    keep = [n for n, c in zip(table.column_names, table.columns) if not pa.types.is_null(c.type)]
    batch = pa.RecordBatch.from_arrays([list_column(table.column(n).combine_chunks()) for n in keep], names=keep)
    return example_coder.RecordBatchToExamples(batch)


def encode_examples(rows: List[Dict[str, Any]]) -> List[bytes]:
    return encode_table(pa.Table.from_pylist(rows))


class _Encode(beam.DoFn):
    """(split, labelled table) -> one block of framed tf.Example records on the split's output, in the
    table's order (tfrecord_blocks.py says why blocks)."""

    def process(self, element):
        split, table = element
        yield beam.pvalue.TaggedOutput(split, tfrecord_blocks.frame(encode_table(table)))


def _write_json(obj: Any, path: str) -> None:
    with tf.io.gfile.GFile(path, "w") as fh:
        fh.write(json.dumps(obj, indent=2, sort_keys=True))


def failed_conditions(n_quarantined: int, n_input: int, limit: float, unreadable: int) -> List[str]:
    """Each quarantine rule the day broke, in words an operator can act on (empty: none)."""
    fraction = n_quarantined / max(n_input, 1)
    share = f"{n_quarantined} of {n_input} rows quarantined ({fraction:.2%})"
    failed = []
    if fraction > limit:
        failed.append(f"{share}, over log_join.max_quarantine_fraction = {limit:.2%}")
    if unreadable:
        failed.append(f"{unreadable} unreadable file(s) in the partition (any unreadable file fails the day"
                      + ("" if fraction > limit else f"; {share}, within the {limit:.2%} limit") + ")")
    return failed


def counted(counts: Dict[str, int], accounting: Dict[str, Dict[str, int]], logs: Sequence[str]) -> Dict[str, Any]:
    """The join report's counted part, from the stage's summed Beam counts: the accounting per log,
    the quarantine reasons, unreadable files, examples per split/scene/label, and the notes."""
    return {"accounting": accounting,
            "quarantine_reasons": {k[len("reason."):]: v for k, v in counts.items() if k.startswith("reason.")},
            "unreadable_files": sum(counts.get(f"{log}.unreadable_files", 0) for log in logs),
            "examples": {k[len("examples."):]: v for k, v in counts.items() if k.startswith("examples.")},
            "notes": sorted(k[len("note."):] for k in counts if k.startswith("note."))}


def record_day(summary: Dict[str, Any], accounting: Dict[str, Dict[str, int]], report, examples, span: int,
               span_date: dt.date) -> None:
    """Writes join_report.json and the artifacts' properties: the report's bucket counts per log, the
    examples' span and format. Shared by every first stage that writes Examples and a JoinReport."""
    _write_json(summary, os.path.join(report.uri, "join_report.json"))
    for log, acc in accounting.items():
        for bucket, n in acc.items():
            report.set_int_custom_property(f"{log}_{bucket}", n)
    report.set_int_custom_property("span", span)
    examples.span = span
    examples.version = 0
    examples.set_string_custom_property("payload_format", "FORMAT_TF_EXAMPLE")
    examples.set_string_custom_property("file_format", "tfrecords_gzip")
    examples.set_string_custom_property("span_date", f"{span_date}")


def raise_if_over_limit(what: str, summary: Dict[str, Any], report_uri: str, exec_properties: Dict[str, Any],
                        run_date: dt.date) -> None:
    """Fails the day when it broke a quarantine rule (``failed_conditions``), with the reasons by
    count and where the quarantined rows are: copied to ``evidence_root`` when set (keep_evidence).
    ``what`` names the stage and day in the message (``log join for 2026-11-20``)."""
    accounting, reasons = summary["accounting"], summary["quarantine_reasons"]
    n_input = sum(a["input"] for a in accounting.values())
    n_quarantined = sum(a["quarantined"] for a in accounting.values())
    limit = float(exec_properties["max_quarantine_fraction"])
    failed = failed_conditions(n_quarantined, n_input, limit, summary["unreadable_files"])
    if not failed:
        return
    detail = "; ".join(f"{r}: {n}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    evidence_root = exec_properties.get("evidence_root")
    where = os.path.join(report_uri, "quarantine")
    if evidence_root:
        kept = keep_evidence(report_uri, evidence_root, run_date)
        where = (f"{os.path.join(kept, 'quarantine')} (accounting: {os.path.join(kept, 'join_report.json')}; "
                 "kept there because a failed execution's output directory is deleted)")
    raise QuarantineThresholdError(
        f"{what} failed: {' and '.join(failed)}. Reasons: {detail or 'none'}. "
        f"Quarantined rows with their reasons: {where}")


def keep_evidence(report_uri: str, evidence_root: str, run_date: dt.date) -> str:
    """Copies the quarantined rows and the accounting of a failed join out of its output directory.

    Why: TFX deletes a failed execution's output directory, so the rows the
    error message pointed to vanished with it. The copy goes to
    ``<evidence_root>/<run_date>/attempt-<N>/`` (N counts this date's failed
    attempts from 1), through tf.io.gfile so a ``gs://`` home works too.
    """
    day_dir = os.path.join(evidence_root, f"{run_date}")
    tf.io.gfile.makedirs(day_dir)
    attempt = 1 + sum(1 for d in tf.io.gfile.listdir(day_dir) if d.rstrip("/").startswith("attempt-"))
    while True:  # another attempt of the same date may have taken the number meanwhile
        target = os.path.join(day_dir, f"attempt-{attempt}")
        if not tf.io.gfile.exists(target):
            break
        attempt += 1
    tf.io.gfile.makedirs(os.path.join(target, "quarantine"))
    for name in ("counts.json", "join_report.json"):
        src = os.path.join(report_uri, name)
        if tf.io.gfile.exists(src):
            tf.io.gfile.copy(src, os.path.join(target, name), overwrite=True)
    for src in tf.io.gfile.glob(os.path.join(report_uri, "quarantine", "*.jsonl")):
        tf.io.gfile.copy(src, os.path.join(target, "quarantine", os.path.basename(src)), overwrite=True)
    return target


def funnel_of(spec: Optional[Sequence[Mapping[str, Any]]], attribution_window_days: float,
              raw_schema_path: Optional[str] = None) -> join_logic.Funnel:
    """``log_join.funnel`` checked against the raw event schema (its logs exist, no label overwrites
    an impression column); None: the default funnel. A config error is a ValueError naming the step."""
    schema = load_raw_schema(raw_schema_path or RAW_EVENTS_PATH)
    return join_logic.parse_funnel(spec, attribution_window_days, known_logs=schema["logs"],
                                   reserved_columns=schema["logs"]["impressions"]["fields"])


def check_task_labels(tasks, join: join_logic.Funnel, raw_schema_path: Optional[str] = None) -> None:
    """The task funnel (``tasks:``, schemas/tasks.py) against the join's: each task learns from a label
    the join writes (or a column of the impressions), and a task's parent's label is an ancestor of
    its label in the join, so the labels it is trained and evaluated on are nested as the heads
    assume (purchase after cart needs conversions joined after carts, not after clicks). A
    TaskConfigError names the task."""
    from schemas.tasks import TaskConfigError
    impression_fields = list(load_raw_schema(raw_schema_path or RAW_EVENTS_PATH)["logs"]["impressions"]["fields"])
    after = {s.label: s.after for s in join.steps}
    for task in tasks.tasks:
        if task.label not in after and task.label not in impression_fields:
            hint = ("a regression label must be a column of the impressions log (or use input.kind: samples)"
                    if not task.binary else "add the log that sets it to log_join.funnel, or use input.kind: samples")
            raise TaskConfigError(f"task {task.name!r} learns from {task.label!r}, which no step of log_join.funnel "
                                  f"labels (it labels {list(after)}) and the impressions log does not carry; {hint}")
        parent = tasks.parent(task.name)
        if parent is None or task.label not in after:
            continue
        ancestors, label = [], after[task.label]
        while label is not None:
            ancestors.append(label)
            label = after.get(label)
        if parent.label not in ancestors:
            raise TaskConfigError(
                f"task {task.name!r} comes after {parent.name!r} (label {parent.label!r}), but log_join.funnel joins "
                f"{task.label!r} after {' <- '.join(ancestors) or 'the impression'}: its labels would not be nested "
                f"under {parent.label!r}; make the join's step for {task.label!r} come after {parent.label!r}")


def _funnel_json(funnel: join_logic.Funnel) -> List[Dict[str, Any]]:
    return [{"log": s.log, "label": s.label, "after": s.after,
             "attribution_window_days": None if s.window_us is None else s.window_us / DAY_US}
            for s in funnel.steps]


def check_accounting(counts: Dict[str, int], logs: Sequence[str] = LOGS) -> Dict[str, Dict[str, int]]:
    """Per log: input rows against the sum of its buckets. Raises if any row is unaccounted for."""
    buckets = ("joined", "duplicate", "orphan", "quarantined", "out_of_window")
    table = {}
    for log in logs:
        got = {b: counts.get(f"{log}.{b}", 0) for b in buckets}
        total = sum(got.values())
        table[log] = dict(got, input=counts.get(f"{log}.input", 0), accounted=total)
        if total != table[log]["input"]:
            raise AccountingError(f"{log}: {table[log]['input']} input rows but {total} accounted for ({got})")
    return table


class Executor(base_beam_executor.BaseBeamExecutor):

    def Do(self, input_dict, output_dict, exec_properties):
        run_date = parse_run_date(exec_properties["run_date"])
        delay = int(exec_properties["label_delay_days"])
        if delay < 0:
            raise ValueError(f"label_delay_days must be >= 0, got {delay}")
        span_date = run_date - dt.timedelta(days=delay)
        span = date_to_span(span_date)
        funnel_spec = exec_properties.get("funnel")
        funnel = funnel_of(json.loads(funnel_spec) if funnel_spec else None,
                           float(exec_properties["attribution_window_days"]), exec_properties.get("raw_schema_path"))
        logs = funnel.logs
        logs_root = exec_properties["logs_root"]
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        report = artifact_utils.get_single_instance(output_dict["join_report"])

        # Plan all reads first: a missing partition fails here, before any Beam work.
        chunks: List[raw_logs.Chunk] = raw_logs.plan_chunks(logs_root, "impressions", span_date)
        event_days = [span_date + dt.timedelta(days=i) for i in range(delay + 1)]
        for log in logs[1:]:   # every declared funnel log must have its partitions: none is optional
            for day in event_days:
                try:
                    chunks.extend(raw_logs.plan_chunks(logs_root, log, day))
                except raw_logs.MissingLogsError as err:
                    raise raw_logs.MissingLogsError(
                        f"{err} ({log} is a step of log_join.funnel: {', '.join(funnel.logs[1:])})") from None
        logging.info("log join: run_date=%s span=%d (%s) reading %d chunks from %s",
                     run_date, span, span_date, len(chunks), logs_root)

        buckets = join_logic.write_order_buckets(sum(c.rows for c in chunks if c.log == "impressions"))
        examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
        counts_path = os.path.join(report.uri, "counts.json")
        with self._make_beam_pipeline() as p:
            parts = []
            count_pcolls = []
            for log in logs:
                read = (p | f"Plan[{log}]" >> beam.Create([c for c in chunks if c.log == log])
                        | f"Reshuffle[{log}]" >> beam.Reshuffle()
                        | f"Read[{log}]" >> beam.ParDo(
                            _ReadChunk(exec_properties.get("raw_schema_path"), buckets)).with_outputs(
                            "counts", "quarantine", "notes", main="parts"))
                parts.append(read.parts)
                count_pcolls.append(read.counts)
                (read.quarantine | f"WriteQuarantine[{log}]" >> beam.io.WriteToText(
                    os.path.join(report.uri, "quarantine", log), file_name_suffix=".jsonl"))
                count_pcolls.append(read.notes | f"CountNotes[{log}]" >> beam.Map(lambda n: (f"note.{n}", 1)))
            # One shuffle by hash bucket joins the logs and sets the label-independent write order
            # (each bucket in hash order of the id; join_logic.write_order_key says why).
            labelled, join_counts = (parts | "FlattenParts" >> beam.Flatten()
                                     | "JoinLogs" >> join_beam.JoinLogs(funnel, int(exec_properties["eval_percent"])))
            count_pcolls.append(join_counts)
            encoded = labelled | "Encode" >> beam.ParDo(_Encode()).with_outputs("train", "eval")
            for split in ("train", "eval"):
                (encoded[split] | f"Write[{split}]" >> tfrecord_blocks.WriteTFRecordBlocks(
                    os.path.join(artifact_utils.get_split_uri([examples], split), "data_tfrecord"),
                    file_name_suffix=".gz"))
            (count_pcolls | "FlattenCounts" >> beam.Flatten()
             | "Sum" >> beam.CombinePerKey(sum)
             | "ToDict" >> beam.combiners.ToDict()
             | "WriteCounts" >> beam.Map(_write_json, counts_path))

        with tf.io.gfile.GFile(counts_path) as fh:
            counts = json.load(fh)
        accounting = check_accounting(counts, logs)
        summary = {
            "run_date": f"{run_date}", "span": span, "span_date": f"{span_date}",
            "label_delay_days": delay, "attribution_window_days": float(exec_properties["attribution_window_days"]),
            "funnel": _funnel_json(funnel), "longest_chain_window_days": funnel.longest_chain_window_us / DAY_US,
            **counted(counts, accounting, logs),
        }
        record_day(summary, accounting, report, examples, span, span_date)
        raise_if_over_limit(f"log join for {span_date}", summary, report.uri, exec_properties, run_date)
        logging.info("log join for %s: %s", span_date, json.dumps(summary["examples"], sort_keys=True))


class LogJoinExampleGen(base_beam_component.BaseBeamComponent):
    """Joins one day of raw logs into labelled, split Examples for span = that day."""

    SPEC_CLASS = LogJoinSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, logs_root: str, run_date, label_delay_days: int, attribution_window_days: float,
                 eval_percent: int, max_quarantine_fraction: float, raw_schema_path: str,
                 evidence_root: Optional[str] = None, funnel: Optional[Sequence[Mapping[str, Any]]] = None):
        """The settings come from configs/pipeline.yaml (``log_join``, ``schemas.raw_events``):
        build it with ``pipeline_components.pipeline.log_join_component``. ``funnel``: ``log_join.funnel``
        (checked here, so a config error fails when the pipeline is built); None: the default funnel."""
        if funnel is not None:
            funnel_of(funnel, float(attribution_window_days), raw_schema_path)
        super().__init__(spec=LogJoinSpec(
            logs_root=logs_root, run_date=run_date, label_delay_days=label_delay_days,
            attribution_window_days=attribution_window_days, eval_percent=eval_percent,
            max_quarantine_fraction=max_quarantine_fraction, raw_schema_path=raw_schema_path,
            evidence_root=evidence_root, funnel=None if funnel is None else json.dumps([dict(s) for s in funnel], sort_keys=True),
            examples=types.Channel(type=standard_artifacts.Examples),
            join_report=types.Channel(type=JoinReport)))
