"""Model-zoo quality on generated logs with known truth: AUC per head per scene next to the oracle.

    python -m benchmarks.model_quality --impressions 1000000 --seeds 3 --config configs/more_epochs.yaml --no-low

For one generated day the real pipeline runs up to Transform (join,
validation, vocabularies). Then every model of the zoo is trained with the
Trainer's own ``train()`` (same input pipeline, same export) for each seed,
and the exported SavedModel scores the eval split through ``serving_default``.

AUCs, mean ± std over seeds, overall and per scene:
- ctr: against click, all eval impressions;
- cvr (clicked): against conversion, clicked eval impressions (what can be observed);
- cvr (entire space): against a counterfactual conversion drawn from the true
  pCVR for *every* impression (only a simulator can give this label);
- ctcvr: against conversion, all eval impressions.
The oracle row scores the same labels with the generator's true probabilities; the matched-form
row, the generator's own model fitted to the training rows (``benchmarks/matched_form.py``);
``--gbdt`` adds LightGBM's (``benchmarks/gbdt.py``).

Two published findings are tested and printed:
(a) ESMM paper: ESMM's CVR beats BASE, a CVR model trained on clicked
    impressions only, most clearly over the entire space.
(b) MMoE paper: MMoE's advantage over Shared-Bottom grows when the tasks are
    less correlated (``--low-correlation``, generator ``task_correlation``).
(c) ``--three-step``: the funnel click -> add-to-cart -> conversion (``benchmarks/three_step.py``):
    GMSL, the Bayesian chain and AITM against ESMM-style products and Shared-Bottom, every head per
    scene, and whether the task-order models help on the deepest task. ``--three-step-only`` runs
    just that section (to ``three_step_quality.md``).
Writes ``model_quality.md`` and ``model_quality.png`` to ``--out``.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from typing import Dict, List  # noqa: E402

from benchmarks import gbdt, matched_form  # noqa: E402
from benchmarks.output import auc_bars, parse_with_locations, write_markdown  # noqa: E402
from benchmarks.generated_day import (DAY, GENERIC_PARAMS, HEADS, Prepared, aucs, oracle,  # noqa: E402,F401
                                      prepare, score, summarise)

MODEL_PARAMS = {
    "shared_bottom": {"bottom_dnn_hidden_units": [128, 64], "tower_dnn_hidden_units": [64]},
    "esmm": {"tower_dnn_hidden_units": [128, 64]},
    "mmoe": {"num_experts": 4, "expert_dnn_hidden_units": [128], "tower_dnn_hidden_units": [64]},
    "omoe": {"num_experts": 4, "expert_dnn_hidden_units": [128], "tower_dnn_hidden_units": [64]},
    "ple": {"num_levels": 2, "specific_expert_num": 1, "shared_expert_num": 2, "expert_dnn_hidden_units": [128],
            "tower_dnn_hidden_units": [64]},
    "aitm": {"tower_dnn_hidden_units": [128, 64]},
}




def trainer_config(model: str, seed: int, epochs: int = None, config_path: str = None,
                   extra_params: dict = None) -> dict:
    """The Trainer's config for ``model`` with this benchmark's layer sizes (``MODEL_PARAMS``) and
    ``extra_params`` (e.g. an interaction bottom); the rest (epochs unless given, early stopping, the
    embedding penalty, ...) from ``config_path`` if given."""
    from configs import load_config, trainer_config as from_config
    config = load_config(config_path)
    generic = {k: v for k, v in (config.trainer.get("model_params") or {}).items() if k in GENERIC_PARAMS}
    params = dict(generic, **MODEL_PARAMS[model], **(extra_params or {}))
    out = from_config(config, model=model, model_params=params, seed=seed)
    if epochs is not None:
        out["epochs"] = epochs
    return out


def train_zoo_model(prep: Prepared, model: str, seed: int, epochs: int = None, config_path: str = None,
                    extra_params: dict = None, variant: str = None, train_missing: bool = True):
    """Trains once per model directory (named by model, config, ``variant``, epochs and seed) and
    scores the eval split; None for a model not trained yet when not ``train_missing``."""
    from trainer.run import train
    cfg = trainer_config(model, seed, epochs, config_path, extra_params)
    tag = os.path.splitext(os.path.basename(config_path))[0] if config_path else "default"
    bottom = cfg["model_params"].get("bottom") or "concat"
    variant = variant or (None if bottom == "concat" else bottom)  # a concat model keeps its old directory name
    name = "_".join([model, tag] + ([variant] if variant else []))
    out = os.path.join(prep.home, "models", f"{name}_e{cfg['epochs']}_seed{seed}")
    if not os.path.exists(os.path.join(out, "saved_model.pb")):
        if not train_missing:
            return None
        train(prep.train_files, [prep.eval_files[0]], prep.transform_dir, out, cfg)
    scored = os.path.join(out, "bench_aucs.json")  # the eval split of a prepared day never changes
    if not os.path.exists(scored):
        with open(scored, "w") as fh:
            json.dump(aucs(prep.eval_frame, score(out, prep.eval_files)), fh)
    with open(scored) as fh:
        return json.load(fh)


def train_base_cvr(prep: Prepared, seed: int, epochs: int) -> Dict[str, Dict[str, float]]:
    """BASE (ESMM paper): the same network's CVR head trained on clicked impressions only."""
    import tensorflow as tf
    import tf_keras as keras

    from trainer import optimizers
    from trainer.balancing import MultiTaskModel
    from trainer.input_fn import training_inputs
    from trainer.models import build_model
    from trainer.run import export_serving_model

    cfg = trainer_config("esmm", seed, epochs)
    bottom = cfg["model_params"].get("bottom") or "concat"
    out = os.path.join(prep.home, "models", "base_cvr" + ("" if bottom == "concat" else f"_{bottom}")
                       + f"_e{epochs}_seed{seed}")
    if not os.path.exists(os.path.join(out, "saved_model.pb")):
        tf.keras.utils.set_random_seed(seed)
        inputs = training_inputs(cfg["feature_spec_path"], prep.transform_dir)
        ds = inputs.dataset(prep.train_files, {"cvr": "conversion", "ctr": "click"}, int(cfg["batch_size"]),
                            shuffle=True, seed=seed, shuffle_buffer=int(cfg["shuffle_buffer"]), cache="memory")

        def clicked_only(x, y):
            mask = tf.reshape(y["ctr"] > 0, [-1])
            return ({k: tf.boolean_mask(v, mask) for k, v in x.items()},
                    {"cvr": tf.boolean_mask(y["cvr"], mask)})
        model = build_model("esmm", inputs.features, cfg["model_params"])  # ESMM's network, CVR head only
        trainable = MultiTaskModel(model, {"cvr": 1.0})
        trainable.compile(optimizer=optimizers.make(cfg["optimizer"], cfg["learning_rate"]))
        trainable.fit(ds.map(clicked_only), epochs=epochs, verbose=0)
        export_serving_model(model, inputs, out)
    return aucs(prep.eval_frame, score(out, prep.eval_files))


def table(results: Dict[str, Dict[str, Dict[str, tuple]]], orc: Dict[str, Dict[str, float]],
          slices: List[str] = None, bound: Dict[str, Dict[str, float]] = None) -> str:
    lines = ["| model | slice | " + " | ".join(f"{h} AUC" for h in HEADS) + " |",
             "|---|---|" + "---|" * len(HEADS)]
    for s in slices or list(orc):
        lines.append(f"| **oracle** | {s} | " + " | ".join(f"{orc[s][h]:.4f}" for h in HEADS) + " |")
        if bound:
            lines.append(f"| *matched form* | {s} | " + " | ".join(f"{bound[s][h]:.4f}" for h in HEADS) + " |")
        for model, summary in results.items():
            lines.append(f"| {model} | {s} | " + " | ".join(
                f"{summary[s][h][0]:.4f} ± {summary[s][h][1]:.4f}" for h in HEADS) + " |")
    return "\n".join(lines)


def chart(results, orc, path: str, bound=None) -> None:
    auc_bars(results, orc, HEADS, path, bound)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impressions", type=int, default=1_000_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--config", help="a config merged over configs/pipeline.yaml for the Trainer, e.g. "
                    "configs/more_epochs.yaml (its epochs, early stopping and embedding penalty)")
    ap.add_argument("--epochs", type=int, help="default: the config's")
    ap.add_argument("--no-low", action="store_true", help="skip (b), the second day at low task correlation")
    ap.add_argument("--no-base", action="store_true", help="skip (a), BASE's three trainings per seed")
    ap.add_argument("--gbdt", action="store_true", help="add LightGBM's row per seed (benchmarks/gbdt.py), "
                    "the tabular baseline")
    ap.add_argument("--base-epochs", type=int, nargs="+", default=[1, 3, 10],
                    help="BASE sees only clicked impressions: it is trained for each and the best is compared")
    ap.add_argument("--correlation", type=float, default=0.6, help="generator task_correlation (default world)")
    ap.add_argument("--low-correlation", type=float, default=-0.3)
    ap.add_argument("--models", nargs="+", default=list(MODEL_PARAMS))
    ap.add_argument("--three-step", action="store_true", help="add (c), the three-step funnel")
    ap.add_argument("--three-step-only", action="store_true", help="run (c) alone, to three_step_quality.md")
    ap.add_argument("--three-step-impressions", type=int, help="default: --impressions")
    args = parse_with_locations(ap)
    t0 = time.time()
    seeds = list(range(args.seeds))
    if args.three_step_only:
        write_markdown(args.out, "three_step_quality", _three_step(args, seeds) + [
            f"total time {time.time() - t0:.0f}s"])
        return

    prep = prepare(args.workdir, args.correlation, args.impressions)
    orc = oracle(prep.eval_frame)
    bound = aucs(prep.eval_frame, matched_form.bound(prep.train_files, prep.eval_frame, prep.eval_files))
    print(f"[quality] matched form: overall {bound['overall']}", flush=True)
    cfg = trainer_config("esmm", 0, args.epochs, args.config)
    results = {}
    for model in args.models:
        results[model] = summarise([train_zoo_model(prep, model, s, args.epochs, args.config) for s in seeds])
        print(f"[quality] {model}: overall {results[model]['overall']}", flush=True)
    command = " ".join(["python -m benchmarks.model_quality", f"--impressions {args.impressions}", f"--seeds {args.seeds}"]
                       + ([f"--config {args.config}"] if args.config else [])
                       + ([f"--epochs {args.epochs}"] if args.epochs else [])
                       + (["--no-low"] if args.no_low else []) + (["--no-base"] if args.no_base else [])
                       + (["--gbdt"] if args.gbdt else []))
    best = max(results, key=lambda m: results[m]["overall"]["ctr"][0])
    if args.gbdt:
        results["LightGBM"] = summarise([gbdt.cached_aucs(prep, s) for s in seeds])
        print(f"[quality] LightGBM: overall {results['LightGBM']['overall']}", flush=True)
    gap = orc["overall"]["ctr"] - results[best]["overall"]["ctr"][0]
    md = [f"# Model quality on generated logs (task_correlation {args.correlation})", "",
          f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.impressions:,} impressions, "
          f"{len(prep.eval_frame):,} eval impressions; {cfg['epochs']} epochs at most "
          f"(early stopping {cfg.get('early_stopping')}), embedding penalty "
          f"{cfg['model_params'].get('l2_embedding', 0)}; seeds {seeds}; `{command}`", "",
          "The matched form is the generator's own model fitted to the same training rows "
          "(`benchmarks/matched_form.py`): what the right form reaches on this much data.", "",
          table(results, orc, bound=bound), "",
          f"Best overall ctr AUC: {best}, {results[best]['overall']['ctr'][0]:.4f}; oracle {orc['overall']['ctr']:.4f} "
          f"(gap {gap:.4f}); matched form {bound['overall']['ctr']:.4f} (gap {orc['overall']['ctr'] - bound['overall']['ctr']:.4f}).", ""]
    if not args.no_base:
        md += _esmm_vs_base(args, prep, seeds, results, orc)
    if args.no_low:
        md += ["## (b) MMoE minus Shared-Bottom by task correlation", "",
               "Not run (`--no-low`): the README quotes the last measurement.", ""]
    else:
        low = prepare(args.workdir, args.low_correlation, args.impressions)
        low_results = {m: summarise([train_zoo_model(low, m, s, args.epochs, args.config) for s in seeds])
                       for m in ("shared_bottom", "mmoe")}
        md += ["## (b) MMoE minus Shared-Bottom, overall AUC, by task correlation", "",
               "| task_correlation | ctr | cvr (clicked) | cvr (entire) | ctcvr |", "|---|---|---|---|---|"]
        for rho, res in ((args.correlation, results), (args.low_correlation, low_results)):
            md.append(f"| {rho:+.1f} | " + " | ".join(
                f"{res['mmoe']['overall'][h][0] - res['shared_bottom']['overall'][h][0]:+.4f}" for h in HEADS) + " |")
    if args.three_step:
        md += [""] + _three_step(args, seeds)
    md += ["", f"total time {time.time() - t0:.0f}s"]
    chart(results, orc, os.path.join(args.out, "model_quality.png"), bound)
    write_markdown(args.out, "model_quality", md)


def _three_step(args, seeds: List[int]) -> List[str]:
    from benchmarks import three_step
    impressions = args.three_step_impressions or args.impressions
    command = (f"python -m benchmarks.model_quality --three-step-only --impressions {impressions} "
               f"--seeds {args.seeds}" + (f" --epochs {args.epochs}" if args.epochs else "")
               + (f" --config {args.config}" if args.config else ""))
    return [f"machine: {platform.machine()}, {os.cpu_count()} cores; `{command}`", ""] + three_step.run(
        args.workdir, args.out, impressions, seeds, MODEL_PARAMS, args.epochs, args.config)


def _esmm_vs_base(args, prep: Prepared, seeds: List[int], results, orc) -> List[str]:
    bases = {e: summarise([train_base_cvr(prep, s, e) for s in seeds]) for e in args.base_epochs}
    best_epochs = max(bases, key=lambda e: bases[e]["overall"]["cvr_clicked"][0])
    base = bases[best_epochs]
    md = ["## (a) ESMM vs BASE (CVR trained on clicked impressions only)", "",
          f"BASE trained for {args.base_epochs} epochs; the best on clicked eval impressions "
          f"({best_epochs}) is compared.", "",
          "| model | cvr AUC, clicked | cvr AUC, entire space (counterfactual labels) |", "|---|---|---|"]
    for name, summary in [(f"BASE, {e} epochs", bases[e]) for e in args.base_epochs] + [
            ("ESMM", results.get("esmm", base)), ("oracle", None)]:
        if summary is None:
            md.append(f"| oracle | {orc['overall']['cvr_clicked']:.4f} | {orc['overall']['cvr_entire']:.4f} |")
        else:
            o = summary["overall"]
            md.append(f"| {name} | {o['cvr_clicked'][0]:.4f} ± {o['cvr_clicked'][1]:.4f} | "
                      f"{o['cvr_entire'][0]:.4f} ± {o['cvr_entire'][1]:.4f} |")
    return md + [""]


if __name__ == "__main__":
    main()
