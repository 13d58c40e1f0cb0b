"""SampleImportExampleGen: one day of labelled samples (one row per impression, label columns) to Examples.

The alternative first stage to the log join (``input.kind: samples`` in the config), for data that
is already joined and labelled, as the Ali-CCP, AliExpress and UCI Adult sets are. It reads
``<samples root>/date=YYYY-MM-DD/*.parquet`` (or ``*.csv`` with a header row), validates every row
against a declared sample schema (``schemas/samples.py``: types, required, ranges, allowed values)
and the task funnel's label rules (binary labels are 0/1; a task that comes ``after`` another is
never 1 where its parent is 0), and writes the same two artifacts as LogJoinExampleGen: a standard
``Examples`` (TFRecord of tf.Example, splits ``train``/``eval``, ``span`` = the run's date) and a
``JoinReport`` (``join_report.json``: every input row is an example or quarantined, with its
reason; ``quarantine/*.jsonl``). So the rest of the pipeline runs unchanged.

Why a custom component: ImportExampleGen and CsvExampleGen turn files into examples as they are.
They do not validate rows against a contract, cannot quarantine a bad row with its reason and
keep going, keep no account of the rows (read = written + quarantined), have no quarantine limit
that fails the day with evidence, cannot check that labels are nested along the task funnel, and
resolve spans by pattern (a ``{SPAN}`` pattern without a range config silently takes the latest
span: log_join.py says why that is wrong for a backfill). Here, as in the log join, the span is the
run's date, passed explicitly, and a missing day is an error naming the path and the date.

Shared with the log join rather than copied: the quarantine records and file opening
(``raw_logs``), the split and write-order hashing (``join_logic.id_hashes``, ``eval_mask``,
``bucket_of``, ``write_order_buckets``), the Arrow batches through one shuffle (``join_beam``), the
tf.Example encoder, the report's and the examples' properties, and the quarantine rule, its error and its
evidence copy (``log_join.record_day``, ``raise_if_over_limit``), and the
block writer (``tfrecord_blocks``). The split hashes the declared id column, or the row's content
(``sample_rows.row_hashes``). With no scene column in the sample schema, every example gets
``default_scene`` in the feature spec's scene column, and the pipeline's scene list is that one
scene. ``eval_percent`` and ``max_quarantine_fraction`` are ``log_join``'s settings.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Dict, List, Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from pipeline_components.components import beam_dependencies
from pipeline_components.components import join_beam, join_logic, log_join, sample_rows, tfrecord_blocks
from pipeline_components.spans import date_to_span, parse_run_date
from schemas.samples import FORMATS, load_sample_schema

beam_dependencies.install()

LOG = sample_rows.LOG
HASH = "__row_hash"   # travels with the rows through the shuffle, dropped before encoding


class SampleImportSpec(types.ComponentSpec):
    PARAMETERS = {
        "samples_root": ExecutionParameter(type=str),
        "run_date": ExecutionParameter(type=str),
        "format": ExecutionParameter(type=str),
        "sample_schema_path": ExecutionParameter(type=str),
        # The task funnel (the config's ``tasks:`` as JSON): which columns are labels, and their nesting.
        "tasks": ExecutionParameter(type=str),
        "scene_column": ExecutionParameter(type=str),
        "default_scene": ExecutionParameter(type=str),
        "id_column": ExecutionParameter(type=str, optional=True),
        "eval_percent": ExecutionParameter(type=int),
        "max_quarantine_fraction": ExecutionParameter(type=float),
        "evidence_root": ExecutionParameter(type=str, optional=True),
    }
    INPUTS: Dict[str, ChannelParameter] = {}
    OUTPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "join_report": ChannelParameter(type=log_join.JoinReport),
    }


class _ReadSamples(beam.DoFn):
    """Reads and validates one chunk; its good rows go out by write bucket as Arrow IPC blobs."""

    def __init__(self, settings: sample_rows.Settings, buckets: int):
        super().__init__()
        self._settings = settings
        self._buckets = buckets

    def process(self, chunk: sample_rows.SampleChunk):
        result = sample_rows.read_chunk(chunk, self._settings)
        yield beam.pvalue.TaggedOutput("counts", (f"{LOG}.input", result.input_rows))
        for q in result.quarantine:
            kind = "unreadable_files" if q["row"] is None else "quarantined"
            yield beam.pvalue.TaggedOutput("counts", (f"{LOG}.{kind}", 1))
            yield beam.pvalue.TaggedOutput("counts", (f"reason.{LOG}: {q['reason']}", q["rows"]))
            yield beam.pvalue.TaggedOutput("quarantine", json.dumps(q, sort_keys=True, default=str))
        for note in result.notes:
            yield beam.pvalue.TaggedOutput("notes", note)
        good = result.good
        if good is None:
            return
        yield beam.pvalue.TaggedOutput("counts", (f"{LOG}.examples", good.num_rows))
        hashes = sample_rows.row_hashes(good, self._settings)
        yield from join_beam.by_bucket(good.append_column(HASH, pa.array(hashes)),
                                       join_logic.bucket_of(hashes, self._buckets))


class _SplitBucket(beam.DoFn):
    """A write bucket's rows in hash order, by split; counts per split, scene and label."""

    def __init__(self, eval_percent: int, scene_column: str, labels: List[str]):
        super().__init__()
        self._eval_percent = eval_percent
        self._scene_column = scene_column
        self._labels = labels

    def process(self, element):
        _, blobs = element
        table = pa.concat_tables([join_beam.from_ipc(b) for b in blobs], promote=True)
        hashes = table.column(HASH).to_numpy()
        table = table.drop([HASH])
        for split, part in join_logic.in_write_order(table, self._eval_percent, hashes).items():
            if part.num_rows:
                yield beam.pvalue.TaggedOutput("counts", (f"examples.{split}", part.num_rows))
                yield beam.pvalue.TaggedOutput(split, tfrecord_blocks.frame(log_join.encode_table(part)))
        for d in table.column(self._scene_column).value_counts().to_pylist():
            yield beam.pvalue.TaggedOutput("counts", (f"examples.scene={d['values']}", d["counts"]))
        for label in self._labels:
            positives = pc.sum(pc.not_equal(table.column(label), 0)).as_py() or 0
            yield beam.pvalue.TaggedOutput("counts", (f"examples.positives.{label}", int(positives)))


def check_accounting(counts: Dict[str, int]) -> Dict[str, Dict[str, int]]:
    """Input rows against examples + quarantined, and the examples against the two splits."""
    acc = {b: counts.get(f"{LOG}.{b}", 0) for b in ("input", "examples", "quarantined")}
    acc["accounted"] = acc["examples"] + acc["quarantined"]
    if acc["accounted"] != acc["input"]:
        raise log_join.AccountingError(f"samples: {acc['input']} input rows but {acc['accounted']} accounted for "
                                       f"({acc['examples']} examples, {acc['quarantined']} quarantined)")
    written = counts.get("examples.train", 0) + counts.get("examples.eval", 0)
    if written != acc["examples"]:
        raise log_join.AccountingError(f"samples: {acc['examples']} valid rows but {written} examples written")
    return {LOG: acc}


class Executor(base_beam_executor.BaseBeamExecutor):

    def Do(self, input_dict, output_dict, exec_properties):
        run_date = parse_run_date(exec_properties["run_date"])
        span = date_to_span(run_date)
        fmt = exec_properties["format"]
        if fmt not in FORMATS:
            raise sample_rows.SampleSettingsError(f"input.samples.format must be one of {list(FORMATS)}, got {fmt!r}")
        schema = load_sample_schema(exec_properties["sample_schema_path"])
        settings = sample_rows.make_settings(
            schema, json.loads(exec_properties["tasks"]), exec_properties["scene_column"],
            exec_properties["default_scene"], exec_properties.get("id_column") or None)
        labels = settings.funnel.labels()
        root = exec_properties["samples_root"]
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        report = artifact_utils.get_single_instance(output_dict["join_report"])

        # Plan all reads first: a missing day fails here, before any Beam work.
        chunks = sample_rows.plan_chunks(root, run_date, fmt)
        logging.info("sample import: run_date=%s span=%d reading %d chunks (%s) from %s",
                     run_date, span, len(chunks), fmt, root)
        buckets = join_logic.write_order_buckets(sum(c.rows for c in chunks))
        examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
        counts_path = os.path.join(report.uri, "counts.json")
        with self._make_beam_pipeline() as p:
            read = (p | "Plan" >> beam.Create(chunks)
                    | "Reshuffle" >> beam.Reshuffle()
                    | "Read" >> beam.ParDo(_ReadSamples(settings, buckets)).with_outputs(
                        "counts", "quarantine", "notes", main="parts"))
            (read.quarantine | "WriteQuarantine" >> beam.io.WriteToText(
                os.path.join(report.uri, "quarantine", LOG), file_name_suffix=".jsonl"))
            split = (read.parts | "GroupByBucket" >> beam.GroupByKey()
                     | "Split" >> beam.ParDo(_SplitBucket(int(exec_properties["eval_percent"]), settings.scene_column,
                                                          labels)).with_outputs("counts", "train", "eval"))
            for name in ("train", "eval"):
                (split[name] | f"Write[{name}]" >> tfrecord_blocks.WriteTFRecordBlocks(
                    os.path.join(artifact_utils.get_split_uri([examples], name), "data_tfrecord"),
                    file_name_suffix=".gz"))
            notes = read.notes | "CountNotes" >> beam.Map(lambda n: (f"note.{n}", 1))
            ((read.counts, split.counts, notes) | "FlattenCounts" >> beam.Flatten()
             | "Sum" >> beam.CombinePerKey(sum)
             | "ToDict" >> beam.combiners.ToDict()
             | "WriteCounts" >> beam.Map(log_join._write_json, counts_path))

        with tf.io.gfile.GFile(counts_path) as fh:
            counts = json.load(fh)
        accounting = check_accounting(counts)
        summary = {
            "run_date": f"{run_date}", "span": span, "span_date": f"{run_date}",
            "input": {"kind": "samples", "root": root, "format": fmt, "schema": schema.path,
                      "id_column": settings.id_column, "scene_column": schema.scene_column,
                      "default_scene": None if schema.scene_column else settings.default_scene,
                      "labels": labels},
            **log_join.counted(counts, accounting, [LOG]),
        }
        log_join.record_day(summary, accounting, report, examples, span, run_date)
        log_join.raise_if_over_limit(f"sample import for {run_date}", summary, report.uri, exec_properties, run_date)
        logging.info("sample import for %s: %s", run_date, json.dumps(summary["examples"], sort_keys=True))


class SampleImportExampleGen(base_beam_component.BaseBeamComponent):
    """Validates one day of labelled samples into split Examples for span = that day."""

    SPEC_CLASS = SampleImportSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, samples_root: str, run_date, format: str, sample_schema_path: str, tasks: list,
                 scene_column: str, default_scene: str, eval_percent: int, max_quarantine_fraction: float,
                 id_column: Optional[str] = None, evidence_root: Optional[str] = None):
        """The settings come from configs/pipeline.yaml (``input.samples``, ``tasks``, ``log_join``): build
        it with ``pipeline_components.pipeline.example_gen_component``."""
        super().__init__(spec=SampleImportSpec(
            samples_root=samples_root, run_date=run_date, format=format, sample_schema_path=sample_schema_path,
            tasks=json.dumps(list(tasks), sort_keys=True), scene_column=scene_column, default_scene=default_scene,
            id_column=id_column, eval_percent=eval_percent, max_quarantine_fraction=max_quarantine_fraction,
            evidence_root=evidence_root, examples=types.Channel(type=standard_artifacts.Examples),
            join_report=types.Channel(type=log_join.JoinReport)))
