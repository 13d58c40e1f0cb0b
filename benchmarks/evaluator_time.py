"""Wall time of TFX's Evaluator executor (TFMA, the pipeline's EvalConfig) on one day's artifacts,
with or without a baseline model: the stage alone, without a pipeline run around it.

    python -m benchmarks.evaluator_time --examples <LogJoinExampleGen/examples/N> \
        --model <Trainer/model/M> [--baseline <Trainer/model/K>] --out /tmp/eval_out

Prints one JSON line: seconds, the evaluated models and the TFMA validation result.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from typing import List, Optional  # noqa: E402

BEAM_ARGS = ["--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _cpu_seconds() -> float:
    """This process's user + system CPU time, every thread: steadier than wall time on a shared machine."""
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _artifact(cls, uri: str, **props):
    a = cls()
    a.uri = uri
    os.makedirs(uri, exist_ok=True)
    for k, v in props.items():
        a.set_int_custom_property(k, v)
    return a


def run_evaluator(examples_uri: str, model_uri: str, out: str, baseline_uri: Optional[str] = None,
                  beam_args: Optional[List[str]] = None, config_path: Optional[str] = None,
                  schema_path: Optional[str] = None) -> dict:
    from google.protobuf import json_format
    from tfx.components.evaluator import executor as evaluator_executor
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import artifact_utils, standard_artifacts

    from configs import load_config
    from pipeline_components.components import beam_dependencies
    from pipeline_components.eval_config import build_eval_config

    beam_dependencies.install()
    config = load_config(config_path)
    shutil.rmtree(out, ignore_errors=True)
    examples = _artifact(standard_artifacts.Examples, examples_uri)
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    inputs = {"examples": [examples], "model": [_artifact(standard_artifacts.Model, model_uri)]}
    if baseline_uri:
        inputs["baseline_model"] = [_artifact(standard_artifacts.Model, baseline_uri)]
    if schema_path:   # the Evaluator's optional schema input: features decoded as the schema says
        schema = _artifact(standard_artifacts.Schema, os.path.join(out, "schema"))
        shutil.copy(schema_path, os.path.join(schema.uri, "schema.pbtxt"))
        inputs["schema"] = [schema]
    outputs = {"evaluation": [_artifact(standard_artifacts.ModelEvaluation, os.path.join(out, "evaluation"))],
               "blessing": [_artifact(standard_artifacts.ModelBlessing, os.path.join(out, "blessing"))]}
    eval_config = build_eval_config(config.heads, config.evaluator, config.feature_spec_path)
    context = BaseBeamExecutor.Context(beam_pipeline_args=beam_args or BEAM_ARGS, tmp_dir=os.path.join(out, "tmp"))
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    evaluator_executor.Executor(context).Do(
        inputs, outputs, {"eval_config": json_format.MessageToJson(eval_config), "example_splits": json.dumps(["eval"])})
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    blessed = os.path.exists(os.path.join(out, "blessing", "BLESSED"))
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "baseline": bool(baseline_uri), "tfma_blessed": blessed,
            "evaluation": os.path.join(out, "evaluation")}


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", required=True, help="the Examples artifact's uri (holds Split-eval)")
    p.add_argument("--model", required=True, help="the candidate Model artifact's uri (holds Format-Serving)")
    p.add_argument("--baseline", help="the baseline Model artifact's uri")
    p.add_argument("--out", required=True, help="a scratch directory (emptied)")
    p.add_argument("--config", help="pipeline config (default: configs/pipeline.yaml)")
    p.add_argument("--schema", help="a schema.pbtxt for the Evaluator's schema input")
    p.add_argument("--beam-arg", action="append", help="a Beam pipeline arg (repeatable; default: %s)" % BEAM_ARGS)
    a = p.parse_args(argv)
    print(json.dumps(run_evaluator(a.examples, a.model, a.out, a.baseline, a.beam_arg, a.config, a.schema)))


if __name__ == "__main__":
    main()
