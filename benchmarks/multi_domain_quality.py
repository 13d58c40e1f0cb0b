"""Multi-scene quality on generated logs with known truth: per-scene AUC per head next to the oracle.

    python -m benchmarks.multi_domain_quality --impressions 500000 --seeds 3 --out benchmarks/results

One generated day goes through the real pipeline up to Transform (as in
``benchmarks.model_quality``); then, for each seed, with the Trainer's own
``train()`` and the same ESMM heads everywhere:
- shared: one model with the scene as a feature (esmm);
- separate: one esmm per scene, trained on that scene's examples only;
- transfer, lambda 0: the transfer model, per-scene losses, no adversarial term;
- transfer, lambda > 0: the same with the Wasserstein term, for each
  ``--adversarial-weights`` value;
- star: STAR (partitioned normalisation, star-topology towers, auxiliary net);
- with ``--gbdt``, LightGBM: the tabular baseline, one model per head with the scene as a
  categorical feature (``benchmarks/gbdt.py``).
AUCs on the eval split, overall and per scene (ctr, cvr on clicked
impressions, cvr over the entire space with counterfactual labels, ctcvr),
mean ± std over seeds; the oracle scores the generator's true probabilities.

The published claim tested (Alibaba search team, "Transfer learning in multi-task multi-scene search", technical blog, 2019): against the shared model, small
scenes' AUC clearly up, the main scene's not down by more than 0.002, and the
adversarial term adds on top of lambda 0. The attention weights per scene of
the transfer model are written as a heatmap. Writes
``multi_domain_quality.{md,png}`` and ``attention_by_scene.png`` to ``--out``.
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

import numpy as np  # noqa: E402

from benchmarks.output import parse_with_locations, write_markdown  # noqa: E402
from benchmarks.model_quality import HEADS, Prepared, aucs, chart, oracle, prepare, score, summarise, table  # noqa: E402

ESMM = {"tower_dnn_hidden_units": [128, 64]}
TRANSFER = {"multi_task": "esmm", "tower_dnn_hidden_units": [128, 64], "domain_tower_dnn_hidden_units": [64],
            "attention_hidden_units": [16, 16], "domain_embedding_dim": 4}
STAR = {"multi_task": "esmm", "tower_dnn_hidden_units": [128, 64], "aux_dnn_hidden_units": [16]}


def config_for(model: str, params: dict, seed: int, epochs: int, multi_domain: dict = None) -> dict:
    from configs import load_config, trainer_config
    trainer = trainer_config(load_config(), model=model, model_params=params, seed=seed, epochs=epochs)
    trainer["multi_domain"] = dict(trainer.get("multi_domain") or {}, **(multi_domain or {}))
    return trainer


def train_cached(prep: Prepared, key: str, config: dict) -> Dict[str, object]:
    """Trains once per key (the model dir is the cache) and returns {"pred", "summary"}."""
    from trainer.run import train
    out = os.path.join(prep.home, "md_models", key)
    summary_path = os.path.join(out, "bench_summary.json")
    if not os.path.exists(summary_path):
        t0 = time.time()
        summary = train(prep.train_files, [prep.eval_files[0]], prep.transform_dir, out, config)
        summary["wall_seconds"] = round(time.time() - t0, 1)
        with open(summary_path, "w") as fh:
            json.dump(summary, fh)
        print(f"[multi-domain] trained {key} in {summary['wall_seconds']}s", flush=True)
    with open(summary_path) as fh:
        summary = json.load(fh)
    return {"pred": score(out, prep.eval_files), "summary": summary}


def train_separate(prep: Prepared, seed: int, epochs: int) -> Dict[str, np.ndarray]:
    """One esmm per scene on that scene's training examples; each scene's eval rows scored by
    its own model."""
    import tensorflow as tf
    import tf_keras as keras

    from schemas import scene_of
    from trainer import optimizers
    from trainer.input_fn import training_inputs
    from trainer.models import build_model
    from trainer.run import export_serving_model
    from trainer.training_model import training_model

    cfg = config_for("esmm", ESMM, seed, epochs)
    inputs = training_inputs(cfg["feature_spec_path"], prep.transform_dir)
    scene = scene_of(inputs.features, lambda f: f.feature)
    pred = {h: np.zeros(len(prep.eval_frame)) for h in ("ctr", "cvr", "ctcvr")}
    for index, name in enumerate(scene.vocabulary):
        out = os.path.join(prep.home, "md_models", f"separate_{name}_seed{seed}")
        if not os.path.exists(os.path.join(out, "saved_model.pb")):
            t0 = time.time()
            tf.keras.utils.set_random_seed(seed)
            labels = {h: cfg["heads"][h]["label"] for h in cfg["loss_weights"]}
            ds = inputs.dataset(prep.train_files, labels, int(cfg["batch_size"]), shuffle=True, seed=seed,
                                shuffle_buffer=int(cfg["shuffle_buffer"]))
            own = ds.unbatch().filter(lambda x, y, i=index: tf.equal(tf.reshape(x["scene"], []), i)).batch(
                int(cfg["batch_size"])).prefetch(tf.data.AUTOTUNE)
            model = build_model("esmm", inputs.features, ESMM)
            trainable = training_model(model, inputs.features, cfg)
            trainable.compile(optimizer=optimizers.make(cfg["optimizer"], cfg["learning_rate"]))
            trainable.fit(own, epochs=epochs, verbose=0)
            export_serving_model(model, inputs, out)
            print(f"[multi-domain] trained separate_{name}_seed{seed} in {time.time() - t0:.0f}s", flush=True)
        mask = (prep.eval_frame["scene"] == name).to_numpy()
        scored = score(out, prep.eval_files)
        for h in pred:
            pred[h][mask] = scored[h][mask]
    return pred


def claims(results: Dict[str, dict], main: str, small: List[str], tolerance: float,
           adversarial: List[str]) -> List[str]:
    """The differences behind the claim, then one verdict line per transfer variant."""
    def delta(a: str, b: str, s: str, h: str) -> float:
        return results[a][s][h][0] - results[b][s][h][0]

    pairs = [("transfer_lambda0", "shared")] + [(a, "shared") for a in adversarial] + [
        (a, "transfer_lambda0") for a in adversarial] + [("star", "shared"), ("transfer_lambda0", "star"),
                                                         ("separate", "shared")]
    lines = ["| comparison | slice | " + " | ".join(HEADS) + " |", "|---|---|" + "---|" * len(HEADS)]
    for a, b in pairs:
        for s in [main] + small + ["overall"]:
            lines.append(f"| {a} − {b} | {s} | " + " | ".join(f"{delta(a, b, s, h):+.4f}" for h in HEADS) + " |")
    verdict = ["", "| variant | small scenes' ctr and ctcvr AUC all up vs shared | "
               f"main scene ({main}) down by at most {tolerance} on every head | "
               "mean small-scene ctr/ctcvr change vs lambda 0 |", "|---|---|---|---|"]
    for variant in ["transfer_lambda0"] + adversarial:
        up = all(delta(variant, "shared", s, h) > 0 for s in small for h in ("ctr", "ctcvr"))
        worst = min(delta(variant, "shared", main, h) for h in HEADS)
        adds = (f"{np.mean([delta(variant, 'transfer_lambda0', s, h) for s in small for h in ('ctr', 'ctcvr')]):+.4f}"
                if variant != "transfer_lambda0" else "")
        verdict.append(f"| {variant} | {'yes' if up else 'no'} | "
                       f"{'yes' if worst >= -tolerance else 'no'} (worst {worst:+.4f}) | {adds} |")
    return lines + verdict


def heatmap(attention: Dict[str, Dict[str, float]], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    scenes = list(attention)
    features = list(next(iter(attention.values())))
    values = np.array([[attention[s][f] for f in features] for s in scenes])
    fig, ax = plt.subplots(figsize=(1.0 * len(features) + 2, 0.6 * len(scenes) + 1.5))
    im = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(features)))
    ax.set_xticklabels(features, rotation=40, ha="right")
    ax.set_yticks(range(len(scenes)))
    ax.set_yticklabels(scenes)
    for i in range(len(scenes)):
        for j in range(len(features)):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", color="white", fontsize=8)
    fig.colorbar(im, ax=ax, label="mean attention weight")
    ax.set_title("Transfer model: feature attention per scene")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impressions", type=int, default=500_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--adversarial-weights", type=float, nargs="+", default=[0.01, 0.1],
                    help="lambda values of the Wasserstein term to compare with lambda 0")
    ap.add_argument("--scene-loss", default="per_scene_mean", choices=["per_scene_mean", "pooled"])
    ap.add_argument("--tolerance", type=float, default=0.002)
    ap.add_argument("--gbdt", action="store_true", help="add LightGBM's row (benchmarks/gbdt.py)")
    args = parse_with_locations(ap)
    t0 = time.time()
    seeds = list(range(args.seeds))
    prep = prepare(args.workdir, 0.6, args.impressions)
    frame = prep.eval_frame
    orc = oracle(frame)
    md_settings = {"scene_loss": args.scene_loss}
    lams = [w for w in args.adversarial_weights if w > 0]
    adversarial = [f"transfer_lambda{w:g}" for w in lams]
    tag = f"{args.scene_loss}_e{args.epochs}"

    runs: Dict[str, List[dict]] = {k: [] for k in ["shared", "separate", "transfer_lambda0", *adversarial, "star"]}
    attention: List[Dict[str, Dict[str, float]]] = []
    timing: Dict[str, List[float]] = {k: [] for k in runs}
    for seed in seeds:
        def run(name, model, params, multi_domain=None, cache_key=None):
            key = cache_key or name
            r = train_cached(prep, f"{key}_{tag}_seed{seed}" if model == "transfer" else f"{key}_e{args.epochs}_seed{seed}",
                             config_for(model, params, seed, args.epochs, multi_domain))
            timing[name].append(r["summary"].get("train_seconds", float("nan")))
            return r
        runs["shared"].append(aucs(frame, run("shared", "esmm", ESMM)["pred"]))
        runs["separate"].append(aucs(frame, train_separate(prep, seed, args.epochs)))
        plain = run("transfer_lambda0", "transfer", TRANSFER, dict(md_settings, adversarial_weight=0.0))
        runs["transfer_lambda0"].append(aucs(frame, plain["pred"]))
        attention.append(plain["summary"]["attention_by_scene"])
        for w, name in zip(lams, adversarial):
            runs[name].append(aucs(frame, run(name, "transfer", TRANSFER,
                                              dict(md_settings, adversarial_weight=w))["pred"]))
        runs["star"].append(aucs(frame, run("star", "star", STAR)["pred"]))
        print(f"[multi-domain] seed {seed} done ({time.time() - t0:.0f}s)", flush=True)

    results = {k: summarise(v) for k, v in runs.items()}
    if args.gbdt:
        from benchmarks import gbdt
        results["LightGBM"] = summarise([gbdt.cached_aucs(prep, s) for s in seeds])
    counts = frame["scene"].value_counts()
    main_scene = str(counts.index[0])
    small = [str(s) for s in counts.index[1:]]
    slices = ["overall", main_scene] + small
    mean_attention = {s: {f: float(np.mean([a[s][f] for a in attention])) for f in attention[0][s]}
                      for s in [main_scene] + small if s in attention[0]}
    heatmap(mean_attention, os.path.join(args.out, "attention_by_scene.png"))
    chart(results, orc, os.path.join(args.out, "multi_domain_quality.png"))
    features = list(next(iter(mean_attention.values())))
    md = [f"# Multi-scene models on generated logs", "",
          f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.impressions:,} impressions, "
          f"{len(frame):,} eval impressions ({', '.join(f'{s} {n:,}' for s, n in counts.items())}); "
          f"{args.epochs} epoch(s); seeds {seeds}; scene_loss {args.scene_loss}; "
          f"`python -m benchmarks.multi_domain_quality --impressions {args.impressions} --seeds {args.seeds} "
          f"--epochs {args.epochs} --adversarial-weights {' '.join(f'{w:g}' for w in lams)} "
          f"--scene-loss {args.scene_loss}" + (" --gbdt" if args.gbdt else "") + "`", "",
          "## AUC per scene and head (mean ± std over seeds)", "", table(results, orc, slices), "",
          "![AUC per scene](multi_domain_quality.png)", "",
          "## The published claim: small scenes up, the main scene not down, the adversarial term adds", "",
          *claims(results, main_scene, small, args.tolerance, adversarial), "",
          "## Attention weights per scene (transfer model, lambda 0, mean over seeds and embedding elements)", "",
          "| scene | " + " | ".join(features) + " |", "|---|" + "---|" * len(features),
          *[f"| {s} | " + " | ".join(f"{mean_attention[s][f]:.3f}" for f in features) + " |" for s in mean_attention],
          "", "![attention](attention_by_scene.png)", "",
          "## Training time per model (s, mean over seeds; `separate` not timed by train())", "",
          "| model | seconds |", "|---|---|",
          *[f"| {k} | {np.nanmean(v):.0f} |" for k, v in timing.items() if v and not np.all(np.isnan(v))],
          "", f"total time {time.time() - t0:.0f}s"]
    write_markdown(args.out, "multi_domain_quality", md)


if __name__ == "__main__":
    main()
