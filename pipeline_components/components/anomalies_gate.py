"""AnomaliesGate: stops the run before Transform when ExampleValidator found anomalies.

Why a custom component: TFX 1.16's ExampleValidator records anomalies (and a
``blessed`` custom property per split) but never fails, and conditional
execution (``tfx.dsl.Cond``) is not supported by the AirflowDagRunner. Without
this gate a day with schema drift would still be trained on and could be
pushed. The gate raises with a one-line-per-anomaly report, which is what the
Airflow task log shows.

Its ``result`` artifact exists only for days that passed, and names the
Examples artifact it vouches for (``examples_id``, ``span``): the training
window (``pipeline_components/components/resolvers.py``) takes only spans with such a result, so a day that
failed validation never reaches a later day's training either.

**An empty sample is not a pass.** TFDV's ``sample_rate`` keeps or drops whole record batches,
so a small split (a small day, a backfill of a quiet scene) can be left with no sampled rows at
all, and ExampleValidator then finds nothing wrong with any column. Given the statistics, the
schema and the examples, the gate recomputes exact statistics in memory for every split whose
sample is empty while its files hold records (such a split is small by construction), and
validates those against the schema.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Dict, List, Optional

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact, artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.utils import io_utils
from tensorflow_metadata.proto.v0 import anomalies_pb2


class ValidationResult(artifact.Artifact):
    """The gate's verdict: a JSON file listing the anomalies that were checked."""
    TYPE_NAME = "rankpipe.ValidationResult"


class SchemaAnomaliesError(RuntimeError):
    pass


def read_anomalies(anomalies: types.Artifact) -> Dict[str, List[str]]:
    """Split name -> readable anomaly lines."""
    found: Dict[str, List[str]] = {}
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(anomalies.uri, f"Split-{split}", "SchemaDiff.pb")
        if not tf.io.gfile.exists(path):
            continue
        proto = anomalies_pb2.Anomalies()
        proto.ParseFromString(io_utils.read_bytes_file(path))
        lines = anomaly_lines(proto)
        if lines:
            found[split] = lines
    return found


def anomaly_lines(proto: anomalies_pb2.Anomalies) -> List[str]:
    lines = [f"feature '{feature}': {info.short_description} ({info.description})"
             for feature, info in sorted(proto.anomaly_info.items())]
    if proto.HasField("dataset_anomaly_info"):
        info = proto.dataset_anomaly_info
        lines.append(f"dataset: {info.short_description} ({info.description})")
    return lines


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict, output_dict, exec_properties):
        anomalies = artifact_utils.get_single_instance(input_dict["anomalies"])
        result = artifact_utils.get_single_instance(output_dict["result"])
        found = read_anomalies(anomalies)
        if input_dict.get("statistics") and input_dict.get("schema") and input_dict.get("examples"):
            for split, lines in exact_anomalies_of_empty_samples(
                    artifact_utils.get_single_instance(input_dict["statistics"]),
                    artifact_utils.get_single_instance(input_dict["schema"]),
                    artifact_utils.get_single_instance(input_dict["examples"])).items():
                found[split] = sorted(set(found.get(split, [])) | set(lines))
        with tf.io.gfile.GFile(os.path.join(result.uri, "anomalies.json"), "w") as fh:
            fh.write(json.dumps(found, indent=2, sort_keys=True))
        result.set_int_custom_property("anomaly_count", sum(len(v) for v in found.values()))
        for examples in input_dict.get("examples") or []:
            result.set_int_custom_property("examples_id", int(examples.id))
            result.set_int_custom_property("span", int(examples.span))
        if found:
            report = "; ".join(f"[{split}] {line}" for split, lines in found.items() for line in lines)
            raise SchemaAnomaliesError(
                f"examples do not match the curated schema (schemas/schema.pbtxt), training stopped: {report}. "
                f"Fix the logs, or if the change is intended, update the schema and rerun.")


def exact_anomalies_of_empty_samples(statistics: types.Artifact, schema: types.Artifact,
                                     examples: types.Artifact) -> Dict[str, List[str]]:
    """Split name -> anomaly lines, from exact statistics, for the splits whose sampled statistics are empty."""
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl
    from tfx_bsl.coders import example_coder
    schema_proto = tfdv.load_schema_text(io_utils.get_only_uri_in_dir(schema.uri))
    found: Dict[str, List[str]] = {}
    for split in artifact_utils.decode_split_names(statistics.split_names):
        stats_path = os.path.join(statistics.uri, f"Split-{split}", "FeatureStats.pb")
        if not tf.io.gfile.exists(stats_path):
            continue
        sampled = tfdv.load_stats_binary(stats_path)
        if any(d.num_examples for d in sampled.datasets):
            continue
        files = tf.io.gfile.glob(os.path.join(examples.uri, f"Split-{split}", "*"))
        records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")] if files else []
        if not records:
            continue
        logging.warning("AnomaliesGate: the statistics sample of split %s is empty (TFDV samples whole record "
                        "batches); validating exact statistics of its %d examples", split, len(records))
        batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(records)
        exact = stats_impl.generate_statistics_in_memory(batch, tfdv.StatsOptions())
        lines = anomaly_lines(tfdv.validate_statistics(exact, schema_proto))
        if lines:
            found[split] = lines
    return found


class AnomaliesGateSpec(types.ComponentSpec):
    PARAMETERS = {}
    INPUTS = {"anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
              "examples": ChannelParameter(type=standard_artifacts.Examples, optional=True),
              "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True),
              "schema": ChannelParameter(type=standard_artifacts.Schema, optional=True)}
    OUTPUTS = {"result": ChannelParameter(type=ValidationResult)}


class AnomaliesGate(base_component.BaseComponent):
    SPEC_CLASS = AnomaliesGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, anomalies: types.BaseChannel, examples: Optional[types.BaseChannel] = None,
                 statistics: Optional[types.BaseChannel] = None, schema: Optional[types.BaseChannel] = None):
        super().__init__(spec=AnomaliesGateSpec(anomalies=anomalies, examples=examples, statistics=statistics,
                                                schema=schema,
                                                result=types.Channel(type=ValidationResult)))
