"""ServingCheck: the candidate must load and score raw examples in a fresh process before it is pushed.

Why a custom component: TFX's InfraValidator does this job but needs Docker (or
Kubernetes) to start a TF Serving container, which this machine kind does not
have. This is the closest real thing: the SavedModel is loaded by a new Python
interpreter (``serving_check_worker``), fed a sample of the day's raw eval
tf.Examples through ``serving_default``, and must serve every head of the task funnel, with
finite outputs (in [0, 1] for a probability), each entire-space head at most its parent's
(ctcvr <= ctr), and a single-example p99 latency within the budget.

Its output is a standard ``InfraBlessing`` (``blessed`` = 1 or 0, as
InfraValidator writes), so TFX's Pusher refuses an unblessed model by itself.
It also carries the span of the day (``span``, ``span_date``): the SpanPusher
derives the model version from it.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import subprocess
import sys
from typing import Any, Dict, List, Optional

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import path_utils

from configs import REPO_ROOT



def write_sample(examples: types.Artifact, split: str, size: int, path: str) -> int:
    files = sorted(glob.glob(os.path.join(examples.uri, f"Split-{split}", "*")))
    if not files:
        raise FileNotFoundError(f"no {split} split in {examples.uri}")
    n = 0
    with tf.io.TFRecordWriter(path) as writer:
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(size):
            writer.write(record.numpy())
            n += 1
    return n


def run_worker(model_dir: str, sample: str, repeats: int, timeout_s: int,
               heads: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "pipeline_components.components.serving_check_worker", model_dir, sample,
           "--repeats", str(repeats)] + (["--heads", json.dumps(heads)] if heads else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=REPO_ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"the serving process did not finish within {timeout_s}s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"the serving process exited with {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def verdict(result: Dict[str, Any], latency_budget_ms: float) -> List[str]:
    """Reasons the candidate may not be pushed (empty: it may)."""
    if "error" in result:
        return [f"the model does not load or run: {result['error']}"]
    reasons = list(result["problems"])
    p99 = result["latency_ms"]["batch_1_p99"]
    if p99 > latency_budget_ms:
        reasons.append(f"single-example p99 latency {p99:.1f} ms exceeds the budget of {latency_budget_ms:.1f} ms")
    return reasons


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict, output_dict, exec_properties):
        model = artifact_utils.get_single_instance(input_dict["model"])
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        model_dir = path_utils.serving_model_path(model.uri)
        sample = os.path.join(blessing.uri, "sample.tfrecord")
        n = write_sample(examples, exec_properties["split"], int(exec_properties["sample_size"]), sample)
        heads = json.loads(exec_properties.get("heads") or "null")
        result = run_worker(model_dir, sample, int(exec_properties["repeats"]), int(exec_properties["timeout_s"]),
                            heads)
        reasons = verdict(result, float(exec_properties["latency_budget_ms"]))
        result.update(sample_examples=n, reasons=reasons, latency_budget_ms=float(exec_properties["latency_budget_ms"]))
        with tf.io.gfile.GFile(os.path.join(blessing.uri, "serving_check.json"), "w") as fh:
            fh.write(json.dumps(result, indent=2, sort_keys=True))
        ok = not reasons
        # The marker files and property InfraValidator writes, so Pusher and tools read it the same way.
        # An empty write: tf.io.gfile creates a file on its first write, not on open.
        with tf.io.gfile.GFile(os.path.join(blessing.uri, "INFRA_BLESSED" if ok else "INFRA_NOT_BLESSED"), "w") as fh:
            fh.write("")
        blessing.set_int_custom_property("blessed", int(ok))
        blessing.set_int_custom_property("span", int(examples.span))
        if examples.has_custom_property("span_date"):
            blessing.set_string_custom_property("span_date", examples.get_string_custom_property("span_date"))
        if ok:
            lat = result["latency_ms"]
            logging.info("serving check passed on %d examples: load %.1fs, batch-1 p50 %.1f ms / p99 %.1f ms",
                         n, result["load_s"], lat["batch_1_p50"], lat["batch_1_p99"])
        else:
            blessing.set_string_custom_property("reason", "; ".join(reasons))
            logging.warning("serving check FAILED, the model will not be pushed: %s", "; ".join(reasons))


class ServingCheckSpec(types.ComponentSpec):
    PARAMETERS = {"split": ExecutionParameter(type=str), "sample_size": ExecutionParameter(type=int),
                  "latency_budget_ms": ExecutionParameter(type=float), "repeats": ExecutionParameter(type=int),
                  "timeout_s": ExecutionParameter(type=int), "heads": ExecutionParameter(type=str, optional=True)}
    INPUTS = {"model": ChannelParameter(type=standard_artifacts.Model),
              "examples": ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {"blessing": ChannelParameter(type=standard_artifacts.InfraBlessing)}


class ServingCheck(base_component.BaseComponent):
    SPEC_CLASS = ServingCheckSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel, split: str,
                 sample_size: int, latency_budget_ms: float, repeats: int, timeout_s: int,
                 heads: Optional[Dict[str, Any]] = None):
        """The values come from configs/pipeline.yaml's ``serving_check`` section; ``heads`` is the task
        funnel's head config (``PipelineConfig.heads``): what the model must serve and the invariants."""
        super().__init__(spec=ServingCheckSpec(
            model=model, examples=examples, split=split, sample_size=sample_size,
            latency_budget_ms=latency_budget_ms, repeats=repeats, timeout_s=timeout_s,
            heads=json.dumps(heads, sort_keys=True) if heads else None,
            blessing=types.Channel(type=standard_artifacts.InfraBlessing)))
