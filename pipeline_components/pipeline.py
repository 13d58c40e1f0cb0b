"""The pipeline factory: which components, wired how. Orchestrator files only call this.

run_date is either a date string (local runs) or a RuntimeParameter (the
compiled pipeline that Airflow runs; each task binds it to its run's date, see
node_runner.py). ``push`` likewise: 1/0, or a RuntimeParameter (a backfill may
run days without pushing them).
"""
from __future__ import annotations

import os
from typing import Any, List, Optional, Union

from configs import PipelineConfig, trainer_config  # first: sets TF_USE_LEGACY_KERAS (configs/tf_env.py)

from tfx import v1 as tfx  # noqa: E402
from tfx.orchestration import data_types  # noqa: E402

from pipeline_components.components import beam_dependencies  # noqa: E402
from pipeline_components.components.anomalies_gate import AnomaliesGate  # noqa: E402
from pipeline_components.components.deployment_gate import BLESSING_KEY, DeploymentGate  # noqa: E402
from pipeline_components.components.log_join import (LogJoinExampleGen, check_task_labels,  # noqa: E402
                                                      funnel_of)
from pipeline_components.components.sample_import import SampleImportExampleGen  # noqa: E402
from pipeline_components.components.resolvers import BLESSING_KEY as BASELINE_BLESSING_KEY  # noqa: E402
from pipeline_components.components.resolvers import MODEL_KEY as BASELINE_MODEL_KEY  # noqa: E402
from pipeline_components.components.resolvers import (EXAMPLES_KEY, VALIDATED_KEY,  # noqa: E402
                                                       OptionalLatestStrategy, SpanBaselineStrategy,
                                                       SpanWindowStrategy)
from pipeline_components.components.serving_check import ServingCheck  # noqa: E402
from pipeline_components.components.span_pusher import SpanPusher  # noqa: E402
from pipeline_components.eval_config import build_eval_config, gate_thresholds  # noqa: E402
from pipeline_components.spans import run_date_in_config  # noqa: E402
from schemas import load_feature_spec  # noqa: E402
from schemas.samples import run_scenes  # noqa: E402

beam_dependencies.install()


def log_join_component(config: PipelineConfig, run_date: Union[str, data_types.RuntimeParameter]) -> LogJoinExampleGen:
    join = config.log_join
    check_task_labels(config.funnel, funnel_of(join.get("funnel"), float(join["attribution_window_days"]),
                                               config.raw_events_path), config.raw_events_path)
    return LogJoinExampleGen(
        logs_root=config.logs_root, run_date=run_date, raw_schema_path=config.raw_events_path,
        label_delay_days=int(join["label_delay_days"]),
        attribution_window_days=float(join["attribution_window_days"]),
        eval_percent=int(join["eval_percent"]),
        max_quarantine_fraction=float(join["max_quarantine_fraction"]),
        evidence_root=config.evidence_root, funnel=join.get("funnel"))


def sample_import_component(config: PipelineConfig,
                            run_date: Union[str, data_types.RuntimeParameter]) -> SampleImportExampleGen:
    samples = config.input["samples"]
    spec = load_feature_spec(config.feature_spec_path)
    scene = next(f for f in spec.features if f.name == spec.scene_feature)
    return SampleImportExampleGen(
        samples_root=samples["path"], run_date=run_date, format=samples["format"],
        sample_schema_path=samples["schema"], tasks=config.funnel.as_config(),
        scene_column=scene.source_column, default_scene=str(samples["default_scene"]),
        id_column=samples.get("id_column"), eval_percent=int(config.log_join["eval_percent"]),
        max_quarantine_fraction=float(config.log_join["max_quarantine_fraction"]),
        evidence_root=config.evidence_root)


def example_gen_component(config: PipelineConfig, run_date: Union[str, data_types.RuntimeParameter]):
    """The first stage, by ``input.kind``: the log join (raw logs) or the sample import (labelled rows).
    Both write an ``Examples`` artifact for span = the run's date and a ``JoinReport``."""
    if config.input["kind"] == "samples":
        return sample_import_component(config, run_date)
    return log_join_component(config, run_date)


def pipeline_scenes(config: PipelineConfig) -> List[str]:
    """The scenes the gate reports on: the raw event schema's, or in samples mode the sample schema's
    (its one ``default_scene`` when it declares no scene column)."""
    return run_scenes(config.input, config.raw_events_path)


def span_delay_days(config: PipelineConfig) -> int:
    """Days between the run's date and its span: log_join.label_delay_days; 0 for samples (already labelled)."""
    return 0 if config.input["kind"] == "samples" else int(config.log_join["label_delay_days"])


def statistics_gen_component(config: PipelineConfig, examples) -> Any:
    """StatisticsGen on a sample of each split (configs/pipeline.yaml, ``statistics``, says why that suffices)."""
    import tensorflow_data_validation as tfdv
    return tfx.components.StatisticsGen(
        examples=examples, stats_options=tfdv.StatsOptions(sample_rate=float(config.statistics["sample_rate"])))


def create_components(config: PipelineConfig, run_date: Union[str, data_types.RuntimeParameter],
                      until: Optional[str] = None,
                      push: Union[int, data_types.RuntimeParameter] = 1) -> List[Any]:
    """All components in order, or those up to and including the component with id ``until``
    (benchmarks and tests that stop at Transform or the Trainer)."""
    delay = span_delay_days(config)
    example_gen = example_gen_component(config, run_date)
    statistics_gen = statistics_gen_component(config, example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=config.tfdv_schema_path)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    gate = AnomaliesGate(anomalies=example_validator.outputs["anomalies"], examples=example_gen.outputs["examples"],
                         statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])

    # The last K validated spans up to this run's (components/resolvers.py says why not SpanRangeStrategy).
    window = tfx.dsl.Resolver(
        strategy_class=SpanWindowStrategy,
        config={"run_date": run_date_in_config(run_date),
                "num_spans": int(config.training_window["num_spans"]),
                "label_delay_days": delay},
        **{EXAMPLES_KEY: tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples,
                                         producer_component_id=example_gen.id, output_key="examples"),
           VALIDATED_KEY: tfx.dsl.Channel(type=gate.outputs["result"].type,
                                          producer_component_id=gate.id, output_key="result")},
    ).with_id("training_window_resolver")
    window.add_upstream_node(gate)
    # Analyzer cache: the newest cache holds per-span partial results, keyed by the span's
    # artifact URI and the analyzer graph, so day N+1 only analyses the span it adds.
    cache = None
    if config.training_window["analyzer_cache"]:
        cache = tfx.dsl.Resolver(
            strategy_class=OptionalLatestStrategy,
            cache=tfx.dsl.Channel(type=tfx.types.standard_artifacts.TransformCache,
                                  producer_component_id="Transform", output_key="updated_analyzer_cache"),
        ).with_id("analyzer_cache_resolver")
        cache.add_upstream_node(gate)
    # materialize=False: TFX's Transform cannot materialise several input spans into one
    # output, and the Trainer applies the same graph (tft_layer) that serving applies.
    transform = tfx.components.Transform(
        examples=window.outputs[EXAMPLES_KEY], schema=schema_gen.outputs["schema"],
        preprocessing_fn="transforms.preprocessing.preprocessing_fn",
        custom_config={"feature_spec_path": config.feature_spec_path},
        analyzer_cache=cache.outputs["cache"] if cache else None,
        materialize=False,
        disable_statistics=True)

    trainer = tfx.components.Trainer(
        run_fn="trainer.run.run_fn",
        examples=window.outputs[EXAMPLES_KEY],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=trainer_config(config))

    # The baseline is the model this span replaces: the DeploymentGate's blessing (not the
    # Evaluator's own, which ignores scene sizes and the serving check) with the greatest span
    # before this run's (components/resolvers.py says why not LatestBlessedModelStrategy).
    # The id is kept from the TFX strategy it replaced, so existing homes' metadata still match.
    baseline = tfx.dsl.Resolver(
        strategy_class=SpanBaselineStrategy,
        config={"run_date": run_date_in_config(run_date), "label_delay_days": delay},
        **{BASELINE_MODEL_KEY: tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
           BASELINE_BLESSING_KEY: tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing,
                                                  producer_component_id="DeploymentGate", output_key=BLESSING_KEY)},
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        example_splits=["eval"],
        eval_config=build_eval_config(config.heads, config.evaluator, config.feature_spec_path))
    check = config.serving_check
    serving_check = ServingCheck(
        model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
        split=str(check["split"]), sample_size=int(check["sample_size"]),
        latency_budget_ms=float(check["latency_budget_ms"]), repeats=int(check["repeats"]),
        timeout_s=int(check["timeout_seconds"]), heads=config.heads)
    deployment_gate = DeploymentGate(
        evaluation=evaluator.outputs["evaluation"], model=trainer.outputs["model"],
        infra_blessing=serving_check.outputs["blessing"], baseline_model=baseline.outputs["model"],
        baseline_blessing=baseline.outputs[BASELINE_BLESSING_KEY],
        heads=list(config.heads), scenes=pipeline_scenes(config),
        thresholds=gate_thresholds(config.evaluator, config.heads),
        scene_feature=load_feature_spec(config.feature_spec_path).scene_feature,
        min_scene_examples=float(config.evaluator["min_scene_examples"]))
    pusher = SpanPusher(model=trainer.outputs["model"], model_blessing=deployment_gate.outputs[BLESSING_KEY],
                        infra_blessing=serving_check.outputs["blessing"],
                        serving_root=config.serving_root, model_name=config.model_name, push=push)
    components = [c for c in (example_gen, statistics_gen, schema_gen, example_validator, gate, window, cache,
                              transform, trainer, baseline, evaluator, serving_check, deployment_gate, pusher) if c is not None]
    if until is None:
        return components
    ids = [c.id for c in components]
    if until not in ids:
        raise ValueError(f"no component {until!r} in the pipeline; components: {ids}")
    return components[: ids.index(until) + 1]


def create_pipeline(config: PipelineConfig, run_date: Union[str, data_types.RuntimeParameter],
                    enable_cache: bool = False, beam_pipeline_args: Optional[List[str]] = None,
                    until: Optional[str] = None,
                    push: Union[int, data_types.RuntimeParameter] = 1,
                    with_secrets: bool = True) -> tfx.dsl.Pipeline:
    """``with_secrets=False`` leaves the ML Metadata password out (a compiled pipeline is a file)."""
    if config.metadata_backend == "sqlite":
        os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=create_components(config, run_date, until, push),
        enable_cache=enable_cache,
        metadata_connection_config=config.metadata_connection_config(with_password=with_secrets),
        beam_pipeline_args=beam_pipeline_args if beam_pipeline_args is not None else config.beam_pipeline_args,
    )
