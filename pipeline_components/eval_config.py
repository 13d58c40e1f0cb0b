"""Builds the TFMA EvalConfig (the deployment gate) from the pipeline config.

Per head: AUC and log-loss (TFMA's native BinaryCrossEntropy), plus example
counts (CVR: weighted, i.e. clicks); slices overall and per scene. A
head with an ``eval_weight`` (CVR: ``click``) is evaluated weighted by that
feature, so unclicked impressions do not count, as the ESMM paper measures CVR.
The gate: an AUC floor per head and a no-regression change threshold against
the last blessed model, both on the overall slice (tiny scenes are reported,
not gated).

Cost note: TFMA 0.47 runs one Python combiner per metric x head x slice x
model, per example (about 25 us each on this machine). Keras-wrapped metrics,
extra slicing specs and each extra metric add a full pass; the Evaluator was
the slowest stage, so the metric list is kept lean. Calibration is left to the
run report (issue 7) rather than paid for per example here.
"""
from __future__ import annotations

from typing import Any, Dict

import tensorflow_model_analysis as tfma
from google.protobuf import wrappers_pb2

from schemas import FEATURE_SPEC_PATH, load_feature_spec


def build_eval_config(heads: Dict[str, Dict[str, Any]], evaluator: Dict[str, Any],
                      feature_spec_path: str = FEATURE_SPEC_PATH) -> tfma.EvalConfig:
    scene = load_feature_spec(feature_spec_path).scene_feature
    weights = {h: a["eval_weight"] for h, a in heads.items() if a.get("eval_weight")}
    model_spec = tfma.ModelSpec(signature_name="serving_default",
                                label_keys={h: a["label"] for h, a in heads.items()},
                                example_weight_keys=weights)
    overall = tfma.SlicingSpec()
    metrics_specs = []
    for name in heads:
        threshold = tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": float(evaluator["auc_floor"][name])}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -float(evaluator["max_auc_drop"])}),
        )
        weighted = name in weights
        metrics_specs.append(tfma.MetricsSpec(
            output_names=[name],
            example_weights=tfma.ExampleWeightOptions(weighted=weighted, unweighted=not weighted),
            metrics=[tfma.MetricConfig(class_name="AUC", per_slice_thresholds=[tfma.PerSliceMetricThreshold(
                         slicing_specs=[overall], threshold=threshold)]),
                     tfma.MetricConfig(class_name="BinaryCrossEntropy")]
                    + ([tfma.MetricConfig(class_name="WeightedExampleCount")] if weighted else []),
        ))
    metrics_specs.append(tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="ExampleCount")],
                                          example_weights=tfma.ExampleWeightOptions(unweighted=True)))
    return tfma.EvalConfig(
        model_specs=[model_spec],
        slicing_specs=[overall, tfma.SlicingSpec(feature_keys=[scene])],
        metrics_specs=metrics_specs,
        options=tfma.Options(include_default_metrics=wrappers_pb2.BoolValue(value=False)),
    )
