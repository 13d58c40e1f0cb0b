"""The pipeline factory: which components, wired how. Orchestrator files only call this.

run_date is either a date string (local runs) or a RuntimeParameter whose
default is the Airflow template ``{{ ds }}``: the logical date selects the span.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from typing import Any, List, Optional, Union  # noqa: E402

from tfx import v1 as tfx  # noqa: E402
from tfx.orchestration import data_types  # noqa: E402

from pipeline_components.anomalies_gate import AnomaliesGate  # noqa: E402
from pipeline_components.config import PipelineConfig  # noqa: E402
from pipeline_components.eval_config import build_eval_config  # noqa: E402
from pipeline_components.log_join import LogJoinExampleGen  # noqa: E402
from schemas import FEATURE_SPEC_PATH, TFDV_SCHEMA_PATH  # noqa: E402

RUN_DATE_PARAM = "run_date"


def run_date_parameter(default: str = "{{ ds }}") -> data_types.RuntimeParameter:
    """The run's date; under Airflow it renders to dag_run.conf['run_date'] or else the logical date."""
    return data_types.RuntimeParameter(name=RUN_DATE_PARAM, ptype=str, default=default)


def create_components(config: PipelineConfig, run_date: Union[str, data_types.RuntimeParameter]) -> List[Any]:
    join = config.log_join
    example_gen = LogJoinExampleGen(
        logs_root=config.logs_root, run_date=run_date,
        label_delay_days=int(join["label_delay_days"]),
        attribution_window_days=float(join["attribution_window_days"]),
        eval_percent=int(join["eval_percent"]),
        max_quarantine_fraction=float(join["max_quarantine_fraction"]))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=TFDV_SCHEMA_PATH)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    gate = AnomaliesGate(anomalies=example_validator.outputs["anomalies"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn="transforms.preprocessing.preprocessing_fn",
        custom_config={"feature_spec_path": FEATURE_SPEC_PATH},
        disable_statistics=True)
    transform.add_upstream_node(gate)

    trainer_config = dict(config.trainer, heads=config.heads, feature_spec_path=FEATURE_SPEC_PATH)
    trainer = tfx.components.Trainer(
        run_fn="trainer.run.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=trainer_config)

    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        example_splits=["eval"],
        eval_config=build_eval_config(config.heads, config.evaluator))
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_dir)))
    return [example_gen, statistics_gen, schema_gen, example_validator, gate, transform, trainer,
            baseline, evaluator, pusher]


def create_pipeline(config: PipelineConfig, run_date: Union[str, data_types.RuntimeParameter],
                    enable_cache: bool = False, beam_pipeline_args: Optional[List[str]] = None
                    ) -> tfx.dsl.Pipeline:
    os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=create_components(config, run_date),
        enable_cache=enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path),
        beam_pipeline_args=beam_pipeline_args if beam_pipeline_args is not None else config.beam_pipeline_args,
    )
