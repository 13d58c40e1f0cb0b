"""Builds the TFMA EvalConfig (the deployment gate) from the pipeline config.

Per head: AUC, log-loss (BinaryCrossentropy), calibration, mean label and
prediction, example counts; slices overall and per scene. A head with an
``eval_slice`` (CVR: click = 1) is read on that population instead of all
impressions. The gate: an AUC floor per head and a no-regression change
threshold against the last blessed model, both on the head's overall
population (tiny scenes are reported, not gated).
"""
from __future__ import annotations

from typing import Any, Dict, List

import tensorflow_model_analysis as tfma
from google.protobuf import wrappers_pb2

from schemas import load_feature_spec


def head_slices(head: Dict[str, Any], scene_feature: str) -> List[tfma.SlicingSpec]:
    """(overall, per scene) slicing specs on which a head is read."""
    values = {k: str(v) for k, v in (head.get("eval_slice") or {}).items()}
    return [tfma.SlicingSpec(feature_values=values),
            tfma.SlicingSpec(feature_keys=[scene_feature], feature_values=values)]


def build_eval_config(heads: Dict[str, Dict[str, Any]], evaluator: Dict[str, Any]) -> tfma.EvalConfig:
    scene = load_feature_spec().scene_feature
    model_spec = tfma.ModelSpec(signature_name="serving_default",
                                label_keys={h: a["label"] for h, a in heads.items()})
    slicing: List[tfma.SlicingSpec] = []
    metrics_specs = []
    for name, head in heads.items():
        overall, per_scene = head_slices(head, scene)
        for s in (overall, per_scene):
            if s not in slicing:
                slicing.append(s)
        threshold = tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": float(evaluator["auc_floor"][name])}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -float(evaluator["max_auc_drop"])}),
        )
        auc = tfma.MetricConfig(class_name="AUC", config='{"num_thresholds": 1000}',
                                per_slice_thresholds=[tfma.PerSliceMetricThreshold(
                                    slicing_specs=[overall], threshold=threshold)])
        metrics_specs.append(tfma.MetricsSpec(
            output_names=[name],
            metrics=[auc,
                     tfma.MetricConfig(class_name="BinaryCrossentropy", config='{"name": "log_loss"}'),
                     tfma.MetricConfig(class_name="Calibration"),
                     tfma.MetricConfig(class_name="MeanLabel"),
                     tfma.MetricConfig(class_name="MeanPrediction")],
        ))
    metrics_specs.append(tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="ExampleCount")]))
    return tfma.EvalConfig(
        model_specs=[model_spec],
        slicing_specs=slicing,
        metrics_specs=metrics_specs,
        options=tfma.Options(include_default_metrics=wrappers_pb2.BoolValue(value=False)),
    )
