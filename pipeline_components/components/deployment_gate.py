"""DeploymentGate: the final blessing, from TFMA's validation, scene sizes and the serving check.

Why a custom component: TFMA applies a threshold to every slice it matches,
whatever the slice's size, so a per-scene no-regression threshold would let a
scene with a few hundred examples flip the blessing on noise. TFMA has no
"gate only above N examples" option (``Options.min_slice_size`` drops the
slice's metrics altogether, which would hide them from the report). The
Evaluator still computes every metric and every threshold; this gate keeps its
failures except a per-scene change on a scene below
``evaluator.min_scene_examples``, which is reported but does not gate. It also
folds in the ServingCheck verdict, and writes the per-run report.

Its ``deployment_blessing`` is a standard ModelBlessing (``blessed``, ``current_model_id``,
``baseline_model_id``: what TFX's Evaluator writes), so TFX's Pusher and the
LatestBlessedModelStrategy baseline resolver read it unchanged.
"""
from __future__ import annotations

import json
import logging
import os
from typing import List, Optional

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact, artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from pipeline_components.components import gate_report


# Not "blessing": under Airflow, TFX names an artifact "<output key>:<run id>", unique per
# artifact type, so a second ModelBlessing output called "blessing" (the Evaluator's) in the
# same run collides in ML Metadata.
BLESSING_KEY = "deployment_blessing"


class DeploymentReport(artifact.Artifact):
    """report.md, report.png and report.json: candidate vs baseline per scene, and the verdict."""
    TYPE_NAME = "rankpipe.DeploymentReport"


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict, output_dict, exec_properties):
        evaluation = artifact_utils.get_single_instance(input_dict["evaluation"])
        model = artifact_utils.get_single_instance(input_dict["model"])
        infra = artifact_utils.get_single_instance(input_dict["infra_blessing"])
        baseline_models = input_dict.get("baseline_model") or []
        baseline_blessings = input_dict.get("baseline_blessing") or []
        blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
        report = artifact_utils.get_single_instance(output_dict["report"])

        heads = json.loads(exec_properties["heads"])
        scenes = json.loads(exec_properties["scenes"])
        thresholds = json.loads(exec_properties["thresholds"])
        scene_feature = exec_properties["scene_feature"]
        min_n = float(exec_properties["min_scene_examples"])

        candidate = gate_report.read_slice_metrics(evaluation.uri, heads, scene_feature, "candidate")
        baseline = gate_report.read_slice_metrics(evaluation.uri, heads, scene_feature, "baseline")
        found = sorted({s for s, _ in candidate if s != gate_report.OVERALL})
        scenes = scenes + [s for s in found if s not in scenes]  # a scene the config does not list still shows
        validation_ok, failures = gate_report.read_failures(evaluation.uri, scene_feature)
        serving_reasons = [] if infra.get_int_custom_property("blessed") == 1 else [
            infra.get_string_custom_property("reason") or "the serving check did not bless the model"]
        decision = gate_report.decide(failures, validation_ok, candidate, baseline, bool(baseline_models),
                                      min_n, thresholds, serving_reasons, heads, scenes)

        span_date = infra.get_string_custom_property("span_date") or "?"
        compared_with = baseline_line(baseline_models, baseline_blessings)
        context = [f"span {span_date}; candidate model {model.uri}", compared_with,
                   f"min_scene_examples {min_n:,.0f}; auc_floor {thresholds['auc_floor']}; "
                   f"max_auc_drop {thresholds['max_auc_drop']}; "
                   + (f"max_mse_increase {thresholds['max_mse_increase']}; " if thresholds.get("max_mse_increase") else "")
                   + f"calibration_band {thresholds.get('calibration_band')}"]
        table = gate_report.rows(candidate, baseline, heads, scenes, min_n, thresholds)
        text = gate_report.markdown(f"Deployment gate, {span_date}", decision, table, context)
        with tf.io.gfile.GFile(os.path.join(report.uri, "report.md"), "w") as fh:
            fh.write(text)
        with tf.io.gfile.GFile(os.path.join(report.uri, "report.json"), "w") as fh:
            fh.write(json.dumps({"span_date": span_date, "baseline": compared_with,
                                 "blessed": decision.blessed, "blocking": decision.blocking,
                                 "reported": decision.reported, "has_baseline": decision.has_baseline,
                                 "header": gate_report.HEADER, "rows": table}, indent=2))
        gate_report.chart(candidate, baseline, heads, scenes, os.path.join(report.uri, "report.png"))

        _bless(blessing, decision.blessed, model, baseline_models[0] if baseline_models else None, span_date,
               baseline_blessings[0].get_string_custom_property("span_date") if baseline_blessings else "")
        report.set_int_custom_property("blessed", int(decision.blessed))
        report.set_string_custom_property("span_date", span_date)
        where = os.path.join(report.uri, "report.md")
        if decision.blessed:
            logging.info("deployment gate: BLESSED (%d change(s) reported only). Report: %s",
                         len(decision.reported), where)
        else:
            logging.warning("deployment gate: NOT BLESSED, not pushing: %s. Report: %s",
                            " | ".join(decision.blocking), where)


def baseline_line(models: List[types.Artifact], blessings: List[types.Artifact]) -> str:
    """The report's baseline line: which span's model the candidate was compared with."""
    if not models:
        return "baseline: none (no blessed model of an earlier span)"
    day = blessings[0].get_string_custom_property("span_date") if blessings else ""
    return f"baseline: the model of span {day or 'unknown (blessed before spans were recorded)'}, {models[0].uri}"


def _bless(blessing: types.Artifact, ok: bool, model: types.Artifact, baseline: Optional[types.Artifact],
           span_date: str, baseline_span: str) -> None:
    # An empty write, not just an open: tf.io.gfile creates the file on its first write, so the
    # marker file TFX's convention (and anyone listing the blessing) expects was never made.
    with tf.io.gfile.GFile(os.path.join(blessing.uri, "BLESSED" if ok else "NOT_BLESSED"), "w") as fh:
        fh.write("")
    blessing.set_int_custom_property("blessed", int(ok))
    blessing.set_string_custom_property("current_model", model.uri)
    blessing.set_int_custom_property("current_model_id", model.id)
    blessing.set_string_custom_property("span_date", span_date)  # the baseline resolver's key
    if baseline is not None:
        blessing.set_string_custom_property("baseline_model", baseline.uri)
        blessing.set_int_custom_property("baseline_model_id", baseline.id)
        blessing.set_string_custom_property("baseline_span_date", baseline_span)


class DeploymentGateSpec(types.ComponentSpec):
    PARAMETERS = {"heads": ExecutionParameter(type=str), "scenes": ExecutionParameter(type=str),
                  "thresholds": ExecutionParameter(type=str), "scene_feature": ExecutionParameter(type=str),
                  "min_scene_examples": ExecutionParameter(type=float)}
    INPUTS = {"evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
              "model": ChannelParameter(type=standard_artifacts.Model),
              "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
              "baseline_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
              "infra_blessing": ChannelParameter(type=standard_artifacts.InfraBlessing)}
    OUTPUTS = {BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
               "report": ChannelParameter(type=DeploymentReport)}


class DeploymentGate(base_component.BaseComponent):
    SPEC_CLASS = DeploymentGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, evaluation: types.BaseChannel, model: types.BaseChannel,
                 infra_blessing: types.BaseChannel, baseline_model: Optional[types.BaseChannel],
                 baseline_blessing: Optional[types.BaseChannel],
                 heads: list, scenes: list, thresholds: dict, scene_feature: str, min_scene_examples: float):
        super().__init__(spec=DeploymentGateSpec(
            evaluation=evaluation, model=model, infra_blessing=infra_blessing, baseline_model=baseline_model,
            baseline_blessing=baseline_blessing, heads=json.dumps(list(heads)), scenes=json.dumps(list(scenes)),
            thresholds=json.dumps(thresholds),
            scene_feature=scene_feature, min_scene_examples=float(min_scene_examples),
            **{BLESSING_KEY: types.Channel(type=standard_artifacts.ModelBlessing)},
            report=types.Channel(type=DeploymentReport)))
