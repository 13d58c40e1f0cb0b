"""Builds the TFMA EvalConfig (the Evaluator's half of the deployment gate) from the pipeline config.

Per head: AUC, log-loss, calibration (sum of predictions / sum of labels: 1.0
is calibrated), mean label and the example count (a head
with an ``eval_weight``, CVR: the weighted count, i.e. clicks); sliced overall
and per scene. A head with an ``eval_weight`` is evaluated weighted by that
feature, so unclicked impressions do not count, as the ESMM paper measures CVR.

Heads are the task funnel's (``tasks:``, schemas/tasks.py): a conditional head is evaluated
weighted by its ``eval_weight`` (the parent's label), an entire-space head over every impression.
A regression head (e.g. dwell seconds) gets MSE, calibration and mean label instead of AUC and
log-loss.

Thresholds:
- value floor per probability head (``evaluator.auc_floor``), overall slice;
- no-regression change threshold per probability head (``evaluator.max_auc_drop``) against
  the last blessed model, overall *and per scene*; per regression head, the relative MSE
  increase (``evaluator.max_mse_increase``), overall and per scene.
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

from pipeline_components.tfma_metrics import MSE as MSE_KEY, GateMetrics
from schemas import load_feature_spec


# (evaluator key, the heads it applies to: probability or regression)
PER_HEAD_KEYS = (("auc_floor", "binary"), ("max_auc_drop", "binary"), ("max_mse_increase", "regression"))


def per_head(value: Any, heads: Dict[str, Any], what: str) -> Dict[str, float]:
    """A scalar applies to every head; a mapping names every head, or gives a ``default`` for those it
    does not name."""
    if isinstance(value, dict):
        missing = sorted(set(heads) - set(value))
        if missing and "default" not in value:
            raise ValueError(f"evaluator.{what} has no value for heads {missing}; give one per head, a default, "
                             "or a number")
        unknown = sorted(set(value) - set(heads) - {"default"})
        if unknown:
            raise ValueError(f"evaluator.{what} names {unknown}, which are not heads of the declared tasks; "
                             f"heads: {sorted(heads)}")
        return {h: float(value.get(h, value.get("default"))) for h in heads}
    if value is None:
        raise ValueError(f"evaluator.{what} is needed for heads {sorted(heads)}")
    return {h: float(value) for h in heads}


def heads_of_type(heads: Dict[str, Any], kind: str) -> Dict[str, Any]:
    return {h: a for h, a in heads.items() if a.get("type", "binary") == kind}


def gate_thresholds(evaluator: Dict[str, Any], heads: Dict[str, Any]) -> Dict[str, Any]:
    """The DeploymentGate's thresholds: the AUC floor and drop per probability head, the relative MSE
    increase per regression head, and the calibration band."""
    from pipeline_components.components.gate_report import calibration_band
    out: Dict[str, Any] = {}
    for key, kind in PER_HEAD_KEYS:
        applies = heads_of_type(heads, kind)
        value = evaluator.get(key)
        other = sorted(set(value) & set(heads) - set(applies)) if isinstance(value, dict) else []
        if other:
            use = "max_mse_increase" if kind == "binary" else "auc_floor and max_auc_drop"
            raise ValueError(f"evaluator.{key} names {other}, which are {'regression' if kind == 'binary' else 'probability'} "
                             f"heads: {key} applies to {kind} heads only (use {use})")
        out[key] = per_head(value, applies, key) if applies else {}
    return dict(out, calibration_band=calibration_band(evaluator))


def build_eval_config(heads: Dict[str, Dict[str, Any]], evaluator: Dict[str, Any],
                      feature_spec_path: str) -> tfma.EvalConfig:
    scene = load_feature_spec(feature_spec_path).scene_feature
    weights = {h: a["eval_weight"] for h, a in heads.items() if a.get("eval_weight")}
    thresholds = gate_thresholds(evaluator, heads)
    floors, drops, increases = (thresholds[k] for k, _ in PER_HEAD_KEYS)
    regression = sorted(heads_of_type(heads, "regression"))
    model_spec = tfma.ModelSpec(signature_name="serving_default",
                                label_keys={h: a["label"] for h, a in heads.items()},
                                example_weight_keys=weights)
    overall = tfma.SlicingSpec()
    by_scene = tfma.SlicingSpec(feature_keys=[scene])
    # One GateMetrics computation (created by the first head's spec) fills every head's metrics;
    # each head keeps its own spec so its thresholds attach to its own, weighted or not, auc key.
    gate_metrics = {"name": "auc", "heads": {h: h in weights for h in heads}}
    if regression:
        gate_metrics["regression"] = regression
    metrics_specs = []
    for name in heads:
        if name in regression:   # thresholds attach to the head's MSE: it may rise by at most max_mse_increase
            thresholds_ = [tfma.PerSliceMetricThreshold(slicing_specs=[overall, by_scene], threshold=tfma.MetricThreshold(
                change_threshold=tfma.GenericChangeThreshold(direction=tfma.MetricDirection.LOWER_IS_BETTER,
                                                             relative={"value": increases[name]})))]
            config = dict(gate_metrics, name=MSE_KEY)
        else:
            floor = tfma.PerSliceMetricThreshold(slicing_specs=[overall], threshold=tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(lower_bound={"value": floors[name]})))
            no_regression = tfma.PerSliceMetricThreshold(slicing_specs=[overall, by_scene], threshold=tfma.MetricThreshold(
                change_threshold=tfma.GenericChangeThreshold(direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                                             absolute={"value": -drops[name]})))
            thresholds_ = [floor, no_regression]
            config = gate_metrics
        weighted = name in weights
        metrics_specs.append(tfma.MetricsSpec(
            output_names=[name],
            example_weights=tfma.ExampleWeightOptions(weighted=weighted, unweighted=not weighted),
            metrics=[tfma.MetricConfig(class_name=GateMetrics.__name__, module=GateMetrics.__module__,
                                       config=json.dumps(config), per_slice_thresholds=thresholds_)],
        ))
    return tfma.EvalConfig(
        model_specs=[model_spec],
        slicing_specs=[overall, by_scene],
        metrics_specs=metrics_specs,
        options=tfma.Options(include_default_metrics=wrappers_pb2.BoolValue(value=False)),
    )
