"""Builds the TFMA EvalConfig (the Evaluator's half of the deployment gate) from the pipeline config.

Per head: AUC, log-loss, calibration (sum of predictions / sum of labels: 1.0
is calibrated), mean label and the example count (a head
with an ``eval_weight``, CVR: the weighted count, i.e. clicks); sliced overall
and per scene. A head with an ``eval_weight`` is evaluated weighted by that
feature, so unclicked impressions do not count, as the ESMM paper measures CVR.

Thresholds:
- value floor per head (``evaluator.auc_floor``), overall slice;
- no-regression change threshold per head (``evaluator.max_auc_drop``) against
  the last blessed model, overall *and per scene*.
TFMA applies every threshold whatever a slice's size; the DeploymentGate
(deployment_gate.py) then lets a scene whose example count is below
``evaluator.min_scene_examples`` report its change without gating. With no
baseline (the first run) TFX's Evaluator drops change thresholds
(``rubber_stamp``): only the floors and the serving check gate.

Cost note: TFMA 0.47 runs its combiners per example. Its native metrics took
about five combiners per head x model x slice, three quarters of the stage; all
of them are now one ``GateMetrics`` combiner per slice (tfma_metrics.py), which
buffers and reduces with numpy, under the same metric keys and thresholds.
"""
from __future__ import annotations

import json
from typing import Any, Dict

import tensorflow_model_analysis as tfma
from google.protobuf import wrappers_pb2

from pipeline_components.tfma_metrics import GateMetrics
from schemas import load_feature_spec


def per_head(value: Any, heads: Dict[str, Any], what: str) -> Dict[str, float]:
    """A scalar applies to every head; a mapping must name every head."""
    if isinstance(value, dict):
        missing = sorted(set(heads) - set(value))
        if missing:
            raise ValueError(f"evaluator.{what} has no value for heads {missing}; give one per head or a number")
        return {h: float(value[h]) for h in heads}
    return {h: float(value) for h in heads}


def gate_thresholds(evaluator: Dict[str, Any], heads: Dict[str, Any]) -> Dict[str, Any]:
    """The DeploymentGate's thresholds: the AUC floor and drop per head, and the calibration band."""
    from pipeline_components.components.gate_report import calibration_band
    return dict({k: per_head(evaluator[k], heads, k) for k in ("auc_floor", "max_auc_drop")},
                calibration_band=calibration_band(evaluator))


def build_eval_config(heads: Dict[str, Dict[str, Any]], evaluator: Dict[str, Any],
                      feature_spec_path: str) -> tfma.EvalConfig:
    scene = load_feature_spec(feature_spec_path).scene_feature
    weights = {h: a["eval_weight"] for h, a in heads.items() if a.get("eval_weight")}
    floors = per_head(evaluator["auc_floor"], heads, "auc_floor")
    drops = per_head(evaluator["max_auc_drop"], heads, "max_auc_drop")
    model_spec = tfma.ModelSpec(signature_name="serving_default",
                                label_keys={h: a["label"] for h, a in heads.items()},
                                example_weight_keys=weights)
    overall = tfma.SlicingSpec()
    by_scene = tfma.SlicingSpec(feature_keys=[scene])
    # One GateMetrics computation (created by the first head's spec) fills every head's metrics;
    # each head keeps its own spec so its thresholds attach to its own, weighted or not, auc key.
    gate_metrics = json.dumps({"name": "auc", "heads": {h: h in weights for h in heads}})
    metrics_specs = []
    for name in heads:
        floor = tfma.PerSliceMetricThreshold(slicing_specs=[overall], threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": floors[name]})))
        no_regression = tfma.PerSliceMetricThreshold(slicing_specs=[overall, by_scene], threshold=tfma.MetricThreshold(
            change_threshold=tfma.GenericChangeThreshold(direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                                         absolute={"value": -drops[name]})))
        weighted = name in weights
        metrics_specs.append(tfma.MetricsSpec(
            output_names=[name],
            example_weights=tfma.ExampleWeightOptions(weighted=weighted, unweighted=not weighted),
            metrics=[tfma.MetricConfig(class_name=GateMetrics.__name__, module=GateMetrics.__module__,
                                       config=gate_metrics, per_slice_thresholds=[floor, no_regression])],
        ))
    return tfma.EvalConfig(
        model_specs=[model_spec],
        slicing_specs=[overall, by_scene],
        metrics_specs=metrics_specs,
        options=tfma.Options(include_default_metrics=wrappers_pb2.BoolValue(value=False)),
    )
