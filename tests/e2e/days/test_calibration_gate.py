"""The calibration gate on a real model and TFX's own Evaluator: day 1's pushed model, with every
head's logit shifted down by 1 (it now under-predicts by about half, while ranking exactly as
before), goes through the Evaluator (TFMA, the pipeline's EvalConfig) and the DeploymentGate
executors. The AUC floors pass, the calibration band refuses it, and the report says why."""
import json
import os

import pytest
import tensorflow as tf
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.types import artifact_utils, standard_artifacts
from google.protobuf import json_format

from pipeline_components.components import deployment_gate
from pipeline_components.eval_config import build_eval_config, gate_thresholds
from pipeline_components.reporting import report
from schemas import load_feature_spec, scenes
from tests.e2e.days.conftest import DAY1

pytestmark = pytest.mark.e2e
SHIFT = 1.0
BAND = {"overall": [0.9, 1.1], "scene": [0.8, 1.25]}   # the default band, whatever the test config says


def _shifted_model(pushed: str, out: str) -> str:
    inner = tf.saved_model.load(pushed)

    class Shifted(tf.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            out = self.inner.signatures["serving_default"](examples=examples)
            shifted = {}
            for head, p in out.items():
                p = tf.clip_by_value(p, 1e-7, 1 - 1e-7)
                shifted[head] = tf.sigmoid(tf.math.log(p / (1 - p)) - SHIFT)
            return shifted

    module = Shifted()
    tf.saved_model.save(module, os.path.join(out, "Format-Serving"), signatures={"serving_default": module.serve})
    return out


def _artifact(cls, uri, **props):
    a = cls()
    a.uri = uri
    os.makedirs(uri, exist_ok=True)
    for k, v in props.items():
        (a.set_int_custom_property if isinstance(v, int) else a.set_string_custom_property)(k, v)
    return a


def test_a_miscalibrated_candidate_is_not_blessed_and_the_report_says_why(day1, tmp_path):
    [run] = [r for r in report.collect_runs(day1) if r.span_date == DAY1.isoformat()]
    pushed = os.path.join(day1.serving_dir, DAY1.strftime("%Y%m%d"))
    model = _artifact(standard_artifacts.Model, _shifted_model(pushed, str(tmp_path / "model")))
    model.id = 1
    examples = _artifact(standard_artifacts.Examples, run.examples_uri)
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    evaluation = _artifact(standard_artifacts.ModelEvaluation, str(tmp_path / "evaluation"))
    blessing = _artifact(standard_artifacts.ModelBlessing, str(tmp_path / "tfma_blessing"))
    evaluator = dict(day1.evaluator, auc_floor=0.5, calibration_band=BAND)
    eval_config = build_eval_config(day1.heads, evaluator, day1.feature_spec_path)
    context = BaseBeamExecutor.Context(beam_pipeline_args=day1.beam_pipeline_args, tmp_dir=str(tmp_path / "tmp"))
    evaluator_executor.Executor(context).Do(
        {"examples": [examples], "model": [model]}, {"evaluation": [evaluation], "blessing": [blessing]},
        {"eval_config": json_format.MessageToJson(eval_config), "example_splits": json.dumps(["eval"])})

    infra = _artifact(standard_artifacts.InfraBlessing, str(tmp_path / "infra"), blessed=1,
                      span_date=DAY1.isoformat())
    gate_blessing = _artifact(standard_artifacts.ModelBlessing, str(tmp_path / "gate_blessing"))
    gate_report = _artifact(deployment_gate.DeploymentReport, str(tmp_path / "report"))
    thresholds = gate_thresholds(evaluator, day1.heads)
    deployment_gate.Executor().Do(
        {"evaluation": [evaluation], "model": [model], "infra_blessing": [infra]},
        {deployment_gate.BLESSING_KEY: [gate_blessing], "report": [gate_report]},
        {"heads": json.dumps(list(day1.heads)), "scenes": json.dumps(scenes(day1.raw_events_path)),
         "thresholds": json.dumps(thresholds), "scene_feature": load_feature_spec(day1.feature_spec_path).scene_feature,
         "min_scene_examples": float(day1.evaluator["min_scene_examples"])})

    assert gate_blessing.get_int_custom_property("blessed") == 0
    assert os.path.exists(os.path.join(gate_blessing.uri, "NOT_BLESSED"))
    with open(os.path.join(gate_report.uri, "report.json")) as fh:
        verdict = json.load(fh)
    assert verdict["blessed"] is False
    # Only calibration blocks: the shift does not change the ranking, so the AUC floors pass.
    assert verdict["blocking"] and all("calibration" in b for b in verdict["blocking"]), verdict["blocking"]
    ctr = [b for b in verdict["blocking"] if b.startswith("ctr calibration overall is ")]
    assert ctr and "under-predicts by" in ctr[0] and "outside the band 0.9-1.1" in ctr[0]
    with open(os.path.join(gate_report.uri, "report.md")) as fh:
        text = fh.read()
    assert "**NOT BLESSED**" in text and ctr[0] in text
    assert "(under-predicts by" in text.split("## Candidate vs baseline")[1]  # the table flags it too
