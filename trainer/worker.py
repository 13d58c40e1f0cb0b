"""One training process outside TFX: ``train()`` on a pipeline run's artifacts, for worker pods.

    TF_CONFIG='{"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, "task": {"type": "worker", "index": 0}}' \\
    python -m trainer.worker --examples <pipeline_root>/LogJoinExampleGen/examples/<id> \\
        --transform-output <pipeline_root>/Transform/transform_graph/<id> --serving-model-dir /mnt/models/run1

Why it exists: inside the pipeline, TFX's Trainer calls ``run_fn`` once per
process, and a multi-worker Trainer (Vertex AI's worker pools) gets the same
``run_fn`` on every worker with its own TF_CONFIG. Clusters without that
launcher (a Kubeflow TFJob, a set of GPU nodes started by hand) and the
two-worker test start this entry point on every worker instead: the same
``train()``, strategy chosen from TF_CONFIG, the trainer settings read from the
pipeline config (``--config``, ``--set trainer.key=json``). Only the chief
writes the model and ``train_summary.json``.
"""
from __future__ import annotations

import os


import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from typing import Any, Dict, List  # noqa: E402


def parse_sets(items: List[str]) -> Dict[str, Any]:
    """``key.sub=json`` pairs into a nested override of the trainer section."""
    out: Dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes key=value (value as JSON), got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value  # a bare string
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = parsed
    return out


def main(argv: List[str] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", required=True, nargs="+",
                    help="Examples artifact directories (one per span); Split-train / Split-eval are read")
    ap.add_argument("--transform-output", required=True, help="the Transform graph artifact directory")
    ap.add_argument("--serving-model-dir", required=True, help="where the chief writes the SavedModel")
    ap.add_argument("--config", default=None, help="pipeline config (default $RANKPIPE_CONFIG or configs/pipeline.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="trainer.KEY=JSON",
                    help="override a trainer setting, e.g. --set trainer.epochs=2")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from configs import load_config, trainer_config
    from trainer.run import train, write_summary

    overrides = parse_sets(args.set)
    if set(overrides) - {"trainer"}:
        raise SystemExit(f"--set only overrides trainer settings (trainer.KEY=...), got {sorted(overrides)}")
    config = load_config(args.config, overrides=overrides)
    for d in args.examples:
        if not os.path.isdir(os.path.join(d, "Split-train")):
            raise SystemExit(f"{d} has no Split-train directory: pass LogJoinExampleGen's examples artifact")
    summary = train([os.path.join(d, "Split-train", "*") for d in args.examples],
                    [os.path.join(d, "Split-eval", "*") for d in args.examples],
                    args.transform_output, args.serving_model_dir, trainer_config(config))
    write_summary(args.serving_model_dir, summary)


if __name__ == "__main__":
    main()
