"""The three-step funnel (impression -> click -> add-to-cart -> conversion) on a generated day with
known truth: ``model_quality --three-step`` trains the task-order models (GMSL, the Bayesian chain,
AITM) next to ESMM-style products and Shared-Bottom and scores every head per scene.

Heads (configs/three_step.yaml): ctr; cart = P(cart | click) and cart_es = P(cart | impression);
purchase = P(conversion | cart) and purchase_es = P(conversion | impression), the deepest and
sparsest. A conditional head is scored on the rows where its parent happened (clicked rows for
cart, carted rows for purchase: what can be observed), an entire-space head on every impression.
The oracle scores the generator's own probabilities (truth files: p_ctr, p_cart, p_purchase).

Every model but the Bayesian chain trains the entire-space heads (ctr, cart_es, purchase_es: ESMM's
losses down the chain); the chain trains its factors (ctr, cart, purchase, each on its given
rows), as its paper's objective says.
"""
from __future__ import annotations

import glob
import json
import os
from typing import Dict, List

import numpy as np
import pandas as pd

from benchmarks.generated_day import DAY, GENERIC_PARAMS, Prepared, eval_frame, score, summarise
from benchmarks.output import auc_bars

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "three_step.yaml")
HEADS = ("ctr", "cart", "cart_es", "purchase", "purchase_es")
MODELS = ("shared_bottom", "esmm", "mmoe", "aitm", "gmsl", "bayes_chain")
# The task-order models' sizes; the others come from model_quality's zoo (``run``'s zoo_params).
ORDER_PARAMS = {
    "gmsl": {"bottom_dnn_hidden_units": [128, 64], "task_dnn_hidden_units": [64], "gru_units": 32,
             "tower_dnn_hidden_units": [32]},
    "bayes_chain": {"bottom_dnn_hidden_units": [128, 64], "tower_dnn_hidden_units": [64]},
}
ENTIRE_SPACE_LOSSES = {"ctr": 1.0, "cart_es": 1.0, "purchase_es": 1.0}
FACTOR_LOSSES = {"ctr": 1.0, "cart": 1.0, "purchase": 1.0}


def prepare(work: str, impressions: int) -> Prepared:
    """Generate the day with carts and run the pipeline (configs/three_step.yaml) up to Transform; the
    eval frame has impression_id, scene, click, cart, conversion, p_ctr, p_cart, p_purchase."""
    from tfx import v1 as tfx

    from configs import load_config
    from loggen import write_days
    from loggen.world import WorldConfig
    from pipeline_components.pipeline import create_pipeline

    home = os.path.join(work, f"three_step_n{impressions}")
    config = load_config(CONFIG, home, overrides={"training_window": {"num_spans": 1}})
    root = config.pipeline_root
    if not glob.glob(os.path.join(root, "Transform", "transform_graph", "*")):
        write_days(config.logs_root, config.truth_root, DAY, 1, impressions,
                   world_config=WorldConfig(carts=True), progress=None)
        tfx.orchestration.LocalDagRunner().run(create_pipeline(config, DAY.isoformat(), until="Transform"))
    [examples] = glob.glob(os.path.join(root, "LogJoinExampleGen", "examples", "*"))
    [transform_dir] = glob.glob(os.path.join(root, "Transform", "transform_graph", "*"))
    eval_files = sorted(glob.glob(os.path.join(examples, "Split-eval", "*")))
    return Prepared(home, [os.path.join(examples, "Split-train", "*")], eval_files, transform_dir,
                    eval_frame(eval_files, config.truth_root, ("click", "cart", "conversion"),
                               ("p_ctr", "p_cart", "p_purchase")))


def trainer_config(model: str, params: dict, seed: int, epochs: int = None, config_path: str = None) -> dict:
    """configs/three_step.yaml's Trainer with ``params``; with ``config_path`` (e.g.
    configs/more_epochs.yaml) that file's trainer section over it: epochs, early stopping and the
    parameters every family takes (the interaction bottom, the embedding penalty), as
    ``model_quality --config`` does."""
    import yaml

    from configs import load_config, trainer_config as from_config
    overlay = {}
    if config_path:
        with open(config_path) as fh:
            overlay = dict((yaml.safe_load(fh) or {}).get("trainer") or {})
    overlay = {k: v for k, v in overlay.items() if k not in ("model", "loss_weights")}
    config = load_config(CONFIG, overrides={"trainer": overlay})
    generic = {k: v for k, v in (config.trainer.get("model_params") or {}).items() if k in GENERIC_PARAMS}
    losses = FACTOR_LOSSES if model == "bayes_chain" else ENTIRE_SPACE_LOSSES
    out = from_config(config, model=model, model_params=dict(generic, **params), seed=seed, loss_weights=losses)
    if epochs is not None:
        out["epochs"] = epochs
    return out


def train_and_score(prep: Prepared, model: str, params: dict, seed: int, epochs: int = None,
                    config_path: str = None) -> Dict[str, Dict[str, float]]:
    """Trains once per model directory (named by model, config, epochs and seed) and scores the eval
    split (cached beside the model)."""
    from trainer.run import train
    cfg = trainer_config(model, params, seed, epochs, config_path)
    tag = os.path.splitext(os.path.basename(config_path))[0] if config_path else "default"
    out = os.path.join(prep.home, "models", f"{model}_{tag}_e{cfg['epochs']}_seed{seed}")
    if not os.path.exists(os.path.join(out, "saved_model.pb")):
        train(prep.train_files, [prep.eval_files[0]], prep.transform_dir, out, cfg)
    scored = os.path.join(out, "bench_aucs.json")
    if not os.path.exists(scored):
        with open(scored, "w") as fh:
            json.dump(aucs(prep.eval_frame, score(out, prep.eval_files, HEADS)), fh)
    with open(scored) as fh:
        return json.load(fh)


def aucs(frame: pd.DataFrame, pred: Dict[str, np.ndarray]) -> Dict[str, Dict[str, float]]:
    """slice -> head -> AUC; conditional heads on the rows where their parent happened."""
    from sklearn.metrics import roc_auc_score

    from configs import load_config
    heads = load_config(CONFIG).heads   # each head's label, and the parent's label it is given
    result: Dict[str, Dict[str, float]] = {}
    for name, mask in [("overall", np.ones(len(frame), bool))] + [
            (s, (frame["scene"] == s).to_numpy()) for s in sorted(frame["scene"].unique())]:
        f = frame[mask]
        result[name] = {}
        for h in HEADS:
            given = heads[h].get("given")
            rows = (f[given] == 1).to_numpy() if given else np.ones(len(f), bool)
            y, p = f[heads[h]["label"]].to_numpy()[rows], pred[h][mask][rows]
            result[name][h] = float(roc_auc_score(y, p)) if 0 < np.mean(y) < 1 else float("nan")
    return result


def oracle(frame: pd.DataFrame) -> Dict[str, Dict[str, float]]:
    p_ctr, p_cart, p_purchase = (frame[c].to_numpy() for c in ("p_ctr", "p_cart", "p_purchase"))
    return aucs(frame, {"ctr": p_ctr, "cart": p_cart, "cart_es": p_ctr * p_cart, "purchase": p_purchase,
                        "purchase_es": p_ctr * p_cart * p_purchase})


def table(results: Dict[str, Dict[str, Dict[str, tuple]]], orc: Dict[str, Dict[str, float]]) -> List[str]:
    lines = ["| model | slice | " + " | ".join(f"{h} AUC" for h in HEADS) + " |", "|---|---|" + "---|" * len(HEADS)]
    for s in orc:
        lines.append(f"| **oracle** | {s} | " + " | ".join(f"{orc[s][h]:.4f}" for h in HEADS) + " |")
        for model, summary in results.items():
            lines.append(f"| {model} | {s} | " + " | ".join(
                f"{summary[s][h][0]:.4f} ± {summary[s][h][1]:.4f}" for h in HEADS) + " |")
    return lines


def deepest_task(results: Dict[str, Dict[str, Dict[str, tuple]]], orc: Dict[str, Dict[str, float]]) -> List[str]:
    """The question the task-order models answer: do they help on the deepest, sparsest task?"""
    lines = ["| model | purchase_es AUC | − ESMM | − Shared-Bottom | purchase (given a cart) AUC | − ESMM | "
             "− Shared-Bottom |", "|---|---|---|---|---|---|---|"]
    o = {m: results[m]["overall"] for m in results}
    for model in results:
        cells = []
        for h in ("purchase_es", "purchase"):
            mean, std = o[model][h]
            cells += [f"{mean:.4f} ± {std:.4f}"] + [
                f"{mean - o[ref][h][0]:+.4f}" if ref in o else "-" for ref in ("esmm", "shared_bottom")]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines.append(f"| oracle | {orc['overall']['purchase_es']:.4f} | | | {orc['overall']['purchase']:.4f} | | |")
    return lines


def run(work: str, out_dir: str, impressions: int, seeds: List[int], zoo_params: Dict[str, dict],
        epochs: int = None, config_path: str = None) -> List[str]:
    """The section's markdown lines; writes ``three_step_quality.png`` to ``out_dir``. ``zoo_params``:
    the layer sizes of the models that are not task-order models (model_quality's)."""
    prep = prepare(work, impressions)
    orc = oracle(prep.eval_frame)
    params = dict(zoo_params, **ORDER_PARAMS)
    results = {}
    for model in MODELS:
        results[model] = summarise([train_and_score(prep, model, params[model], s, epochs, config_path)
                                    for s in seeds], HEADS)
        print(f"[three-step] {model}: overall {results[model]['overall']}", flush=True)
    auc_bars(results, orc, HEADS, os.path.join(out_dir, "three_step_quality.png"))
    f = prep.eval_frame
    cfg = trainer_config("esmm", params["esmm"], 0, epochs, config_path)
    return ["## (c) Three-step funnel: click -> add-to-cart -> conversion", "",
            f"{impressions:,} impressions ({len(f):,} eval: {int(f['click'].sum()):,} clicks, "
            f"{int(f['cart'].sum()):,} carts, {int(f['conversion'].sum()):,} conversions); {cfg['epochs']} epochs "
            f"at most (early stopping {cfg.get('early_stopping')}, embedding penalty "
            f"{cfg['model_params'].get('l2_embedding', 0)}); seeds {seeds}. Conditional heads (cart, purchase) are scored on the rows where their parent "
            "happened, entire-space heads on every impression. The Bayesian chain trains its factors; every other "
            "model the entire-space heads.", ""] + table(results, orc) + [
            "", "### The deepest task (conversion), overall", ""] + deepest_task(results, orc) + [""]
