"""Selective transfer against its controls, on the generator's covariate-shift setting.

    python -m benchmarks.selective_transfer_quality --impressions 500000 --seeds 3 --out benchmarks/results

One day of the covariate-shift generator (``loggen/shift.py``: partner_app's users are 80 % low-income
against main_search's 10 %, and it sees a cheap 40 % of the items) goes through the real pipeline up
to Transform; then, for each seed, the Trainer's own ``train()`` fits, with the same ESMM heads:
- (a) ``shared``: one esmm with the scene as a feature;
- (b) ``transfer_lambda0``: the part-1 transfer model (shared + scene embeddings, per-scene
  attention, shared + specific towers), no adversarial term;
- (c) ``transfer_lambda<w>``: the same with the Wasserstein term at weight w;
- (d) ``fully_shared``: (b) with every main-scene row also added to each target scene's rows
  (``instance_selection.policy: all``), i.e. the target trained on all of main plus its own;
- (e) ``selective``: (b) with instance-based selective transfer (``trainer/instance_selection.py``);
- (f) ``random``: (b) with main-scene rows added at random, at the rate (e) kept for that seed;
- (g) ``target_only``: one esmm per scene on that scene's rows alone.
AUC per scene and head on the eval split, mean ± std over seeds, next to the oracle (the generator's
true probabilities). The std is over training seeds on one eval split; a small scene's eval split is
small, so its sampling error is larger than the std shown (the md gives its click count).

The claims tested (Alibaba search team, "Transfer learning in multi-task multi-scene search",
technical blog, 2019; part 2 as Wang et al., "A Minimax Game for Instance based Selective Transfer
Learning", KDD 2019):
- part 1 (b, c against a): the main scene drops by no more than ``--tolerance`` on any head, and
  the small scenes' ctr and ctcvr AUC rise;
- the adversarial term adds to part 1 (c > b on the small scenes);
- selective transfer beats fully-shared transfer and random selection on the target scene(s).

The figure: the selection policy is learned once more, alone, on the day's training rows (seed
``--figure-seed``), keeping p_θ(d) over the source sample after every episode. Each panel is a PCA
(not t-SNE: PCA is deterministic and one projection serves every panel) of the discriminator's
input representation of d (its final embeddings, numeric features and labels), target rows against
the source rows whose p_θ(d) lies in a τ band at that episode. The number in each panel is the
distance between the selected rows' mean and the target's, in the full representation, relative to
the whole source sample's distance (1: no closer than the source at large, 0: the target's mean).
Writes ``selective_transfer_quality.{md,png}`` and ``selective_transfer_embedding.png`` to ``--out``.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from typing import Dict, List  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.generated_day import HEADS, aucs, oracle, prepare, summarise  # noqa: E402
from benchmarks.model_quality import chart, table  # noqa: E402
from benchmarks.multi_domain_quality import ESMM, TRANSFER, config_for, train_cached, train_separate  # noqa: E402
from benchmarks.output import parse_with_locations, write_markdown  # noqa: E402

JUDGED = ("ctr", "ctcvr")
BANDS = ((0.5, 0.7), (0.7, 0.9), (0.9, 1.0))


def selection(targets: List[str], policy: str, args, rates: Dict[str, float] = None) -> dict:
    chosen = {"target_scenes": list(targets), "policy": policy, "tau": args.tau,
              "source_rows": args.source_rows, "target_rows": args.target_rows, "episodes": args.episodes}
    if rates is not None:
        chosen["random_rate"] = rates
    return chosen


def kept_rates(summary: dict) -> Dict[str, float]:
    """What (e) kept of the window's main-scene rows, per target: the rate (f) draws at."""
    return {t: s["window_kept_rows"] / max(s["window_source_rows"], 1)
            for t, s in summary["instance_selection"]["targets"].items()}


def delta(results, a: str, b: str, scene: str, head: str):
    (ma, sa), (mb, sb) = results[a][scene][head], results[b][scene][head]
    return ma - mb, float(np.hypot(sa, sb))


def claims(results, main: str, small: List[str], targets: List[str], adversarial: List[str],
           tolerance: float) -> List[str]:
    def cell(a, b, s, h):
        d, sd = delta(results, a, b, s, h)
        return f"{d:+.4f} (σ {sd:.4f})"

    lines = ["| comparison | scene | " + " | ".join(HEADS) + " |", "|---|---|" + "---|" * len(HEADS)]
    pairs = [(v, "shared") for v in ["transfer_lambda0", *adversarial]] + [(a, "transfer_lambda0") for a in adversarial]
    pairs += [("selective", other) for other in ("fully_shared", "random", "transfer_lambda0", "target_only")]
    for a, b in pairs:
        for s in ([main] + small if b == "shared" or a in adversarial else targets):
            lines.append(f"| {a} − {b} | {s} | " + " | ".join(cell(a, b, s, h) for h in HEADS) + " |")
    out = lines + ["", "| claim | answer | the numbers |", "|---|---|---|"]
    for variant in ["transfer_lambda0", *adversarial]:
        worst = min(delta(results, variant, "shared", main, h)[0] for h in HEADS)
        ups = {s: [delta(results, variant, "shared", s, h)[0] for h in JUDGED] for s in small}
        up = all(d > 0 for v in ups.values() for d in v)
        out.append(f"| part 1 ({variant} vs shared): {main} down by at most {tolerance} on every head, and every "
                   f"small scene's ctr and ctcvr up | {'yes' if worst >= -tolerance and up else 'no'} | "
                   f"worst {main} change {worst:+.4f}; small scenes ctr/ctcvr "
                   + ", ".join(f"{s} {v[0]:+.4f}/{v[1]:+.4f}" for s, v in ups.items()) + " |")
    for variant in adversarial:
        diffs = [delta(results, variant, "transfer_lambda0", s, h)[0] for s in small for h in JUDGED]
        out.append(f"| the adversarial term adds ({variant} > transfer_lambda0 on the small scenes' ctr and "
                   f"ctcvr) | {'yes' if all(d > 0 for d in diffs) else 'no'} | mean {np.mean(diffs):+.4f}, "
                   f"{sum(d > 0 for d in diffs)} of {len(diffs)} up |")
    for t in targets:
        wins = {o: [delta(results, "selective", o, t, h)[0] for h in JUDGED] for o in ("fully_shared", "random")}
        out.append(f"| selective transfer beats fully-shared transfer and random selection on {t} (ctr and ctcvr) | "
                   f"{'yes' if all(d > 0 for v in wins.values() for d in v) else 'no'} | "
                   + "; ".join(f"vs {o} {v[0]:+.4f}/{v[1]:+.4f}" for o, v in wins.items()) + " |")
    return out


def kept_rows(seeds: List[int], learned: List[dict], targets: List[str]) -> List[str]:
    lines = []
    for seed, run in zip(seeds, learned):
        for t in targets:
            stats = run["targets"][t]
            kept, total = stats["window_kept_rows"], stats["window_source_rows"]
            accuracy = " → ".join("-" if e["discriminator_accuracy"] is None else f"{e['discriminator_accuracy']:.3f}"
                                  for e in stats["episodes"])
            lines.append(f"| {seed} | {t} | {kept:,} of {total:,} ({kept / max(total, 1):.1%}) | {accuracy} |")
    return lines


def learn_for_figure(prep, target: str, args, seed: int):
    """The policy learned alone, as the Trainer would learn it, with what the figure needs."""
    import tensorflow as tf

    from trainer import instance_selection as sel
    from trainer.input_fn import training_inputs
    from trainer.run import _selection_model

    cfg = config_for("transfer", TRANSFER, seed, args.epochs, {"adversarial_weight": 0.0})
    chosen = sel.settings({"instance_selection": selection([target], "learned", args)})
    inputs = training_inputs(cfg["feature_spec_path"], prep.transform_dir)
    scene_feature, source, targets = sel.scene_indices(inputs.features, chosen)
    labels = {h: cfg["heads"][h]["label"] for h in cfg["loss_weights"]}
    tf.keras.utils.set_random_seed(seed)
    ds = inputs.dataset(prep.train_files, labels, int(cfg["batch_size"]), shuffle=True, seed=seed,
                        shuffle_buffer=int(cfg["shuffle_buffer"]))
    pools = sel.collect(ds, scene_feature, {source: args.source_rows, targets[target]: args.target_rows})
    params = dict(cfg["model_params"])
    learner = sel.SelectionLearner(inputs.features, list(labels), scene_feature, targets[target],
                                   lambda: _selection_model(cfg, inputs, params), chosen, seed)
    learned = learner.learn(pools[source], pools[targets[target]], progress=lambda s: print(f"[selective] {s}", flush=True))

    def represent(pool):
        return np.concatenate([learned.discriminator.represent(pool.take(np.arange(i, min(i + 8192, len(pool)))))
                               .numpy() for i in range(0, len(pool), 8192)])
    return represent(pools[source]), represent(pools[targets[target]]), learned


def embedding_figure(source: np.ndarray, target: np.ndarray, history: List[np.ndarray], path: str) -> List[str]:
    """PCA panels (episode × τ band) and the relative mean distance per panel, as table rows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    both = np.concatenate([source, target])
    mean, scale = both.mean(0), both.std(0) + 1e-6
    z_src, z_tgt = (source - mean) / scale, (target - mean) / scale
    _, _, vt = np.linalg.svd(np.concatenate([z_src, z_tgt]), full_matrices=False)
    p_src, p_tgt = z_src @ vt[:2].T, z_tgt @ vt[:2].T
    base = np.linalg.norm(z_src.mean(0) - z_tgt.mean(0))
    rng = np.random.default_rng(0)
    shown_t = rng.choice(len(p_tgt), min(len(p_tgt), 1500), replace=False)
    fig, axes = plt.subplots(len(BANDS), len(history), figsize=(3.2 * len(history), 3.0 * len(BANDS)),
                             sharex=True, sharey=True, squeeze=False)
    rows = ["| episode | τ band | selected rows | relative distance to the target's mean |", "|---|---|---|---|"]
    for j, probs in enumerate(history):
        for i, (lo, hi) in enumerate(BANDS):
            ax = axes[i][j]
            chosen = np.flatnonzero((probs > lo) & (probs <= hi))
            ax.scatter(p_tgt[shown_t, 0], p_tgt[shown_t, 1], s=2, c="grey", alpha=0.4, label="target")
            dist = float(np.linalg.norm(z_src[chosen].mean(0) - z_tgt.mean(0)) / base) if len(chosen) else float("nan")
            if len(chosen):
                shown = rng.choice(chosen, min(len(chosen), 1500), replace=False)
                ax.scatter(p_src[shown, 0], p_src[shown, 1], s=2, c="tab:red", alpha=0.4, label="selected source")
            ax.set_title(f"episode {j + 1}, p in ({lo}, {hi}]\nn={len(chosen):,}, distance {dist:.2f}", fontsize=8)
            rows.append(f"| {j + 1} | ({lo}, {hi}] | {len(chosen):,} | {dist:.3f} |")
    axes[0][0].legend(fontsize=7, markerscale=4)
    fig.suptitle("PCA of the discriminator's inputs: target (grey), kept source (red)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impressions", type=int, default=500_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--adversarial-weight", type=float, default=0.1, help="w of (c), the Wasserstein term")
    ap.add_argument("--targets", nargs="+", default=["partner_app"],
                    help="target scenes of (d), (e), (f) (default: the scene whose population differs most)")
    ap.add_argument("--tau", type=float, default=0.5)
    ap.add_argument("--source-rows", type=int, default=20_000)
    ap.add_argument("--target-rows", type=int, default=20_000)
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--figure-seed", type=int, default=0)
    ap.add_argument("--tolerance", type=float, default=0.002)
    args = parse_with_locations(ap)
    t0 = time.time()
    seeds = list(range(args.seeds))
    prep = prepare(args.workdir, 0.6, args.impressions, covariate_shift=True)
    frame = prep.eval_frame
    orc = oracle(frame)
    adversarial = [f"transfer_lambda{args.adversarial_weight:g}"]
    tag = f"e{args.epochs}_tau{args.tau:g}_{'-'.join(args.targets)}_s{args.source_rows}x{args.episodes}"
    names = ["shared", "transfer_lambda0", *adversarial, "fully_shared", "selective", "random", "target_only"]
    runs: Dict[str, List[dict]] = {k: [] for k in names}
    learned: List[dict] = []
    for seed in seeds:
        def fit(key, model, params, multi_domain=None, chosen=None):
            cfg = config_for(model, params, seed, args.epochs, multi_domain)
            if chosen:
                cfg["instance_selection"] = chosen
            return train_cached(prep, f"{key}_seed{seed}", cfg)
        plain = {"adversarial_weight": 0.0}
        runs["shared"].append(aucs(frame, fit(f"shared_e{args.epochs}", "esmm", ESMM)["pred"]))
        runs["transfer_lambda0"].append(aucs(frame, fit(f"transfer_lambda0_e{args.epochs}", "transfer", TRANSFER,
                                                        plain)["pred"]))
        runs[adversarial[0]].append(aucs(frame, fit(f"{adversarial[0]}_e{args.epochs}", "transfer", TRANSFER,
                                                    {"adversarial_weight": args.adversarial_weight})["pred"]))
        chose = fit(f"selective_{tag}", "transfer", TRANSFER, plain, selection(args.targets, "learned", args))
        runs["selective"].append(aucs(frame, chose["pred"]))
        learned.append(chose["summary"]["instance_selection"])
        rates = kept_rates(chose["summary"])
        runs["random"].append(aucs(frame, fit(f"random_{tag}", "transfer", TRANSFER, plain,
                                              selection(args.targets, "random", args, rates))["pred"]))
        runs["fully_shared"].append(aucs(frame, fit(f"fully_shared_e{args.epochs}_{'-'.join(args.targets)}",
                                                    "transfer", TRANSFER, plain, selection(args.targets, "all", args))["pred"]))
        runs["target_only"].append(aucs(frame, train_separate(prep, seed, args.epochs)))
        print(f"[selective] seed {seed} done ({time.time() - t0:.0f}s); kept "
              + ", ".join(f"{t} {r:.1%}" for t, r in rates.items()), flush=True)

    results = {k: summarise(v) for k, v in runs.items()}
    counts = frame["scene"].value_counts()
    clicks = frame.groupby("scene")["click"].sum()
    main_scene, small = str(counts.index[0]), [str(s) for s in counts.index[1:]]
    chart(results, orc, os.path.join(args.out, "selective_transfer_quality.png"))

    source, target, figure_run = learn_for_figure(prep, args.targets[0], args, args.figure_seed)
    distance_rows = embedding_figure(source, target, figure_run.history,
                                     os.path.join(args.out, "selective_transfer_embedding.png"))
    command = (f"python -m benchmarks.selective_transfer_quality --impressions {args.impressions} --seeds {args.seeds} "
               f"--epochs {args.epochs} --adversarial-weight {args.adversarial_weight:g} --targets "
               f"{' '.join(args.targets)} --tau {args.tau:g} --source-rows {args.source_rows} --target-rows "
               f"{args.target_rows} --episodes {args.episodes} --figure-seed {args.figure_seed}")
    md = ["# Selective transfer against its controls, on the covariate-shift generator", "",
          f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.impressions:,} impressions, "
          f"{len(frame):,} eval impressions (" + ", ".join(f"{s} {n:,} with {int(clicks[s]):,} clicks"
                                                          for s, n in counts.items())
          + f"); {args.epochs} epoch(s); seeds {seeds}; `{command}`", "",
          "## AUC per scene and head (mean ± std over seeds)", "",
          table(results, orc, ["overall", main_scene] + small), "",
          "![AUC per scene](selective_transfer_quality.png)", "",
          "## The claims", "", *claims(results, main_scene, small, args.targets, adversarial, args.tolerance), "",
          "## What selection kept (per seed and target, from train_summary.json)", "",
          "| seed | target | kept of the window's main-scene rows | discriminator accuracy by episode |", "|---|---|---|---|",
          *kept_rows(seeds, learned, args.targets),
          "", f"## The discriminator's inputs, selected source against {args.targets[0]} (seed {args.figure_seed})", "",
          *distance_rows, "", "![embedding](selective_transfer_embedding.png)", "",
          f"total time {time.time() - t0:.0f}s"]
    write_markdown(args.out, "selective_transfer_quality", md)


if __name__ == "__main__":
    main()
