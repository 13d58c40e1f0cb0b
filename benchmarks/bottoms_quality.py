"""Interaction bottoms against the tabular baseline, on generated days with known truth.

    python -m benchmarks.bottoms_quality --impressions 200000 1000000 --correlations 0.6 -0.3 \\
        --seeds 3 --config configs/more_epochs.yaml --zoo-at 1000000:0.6

For each generated day (size × the generator's ``task_correlation``), prepared by the real pipeline
up to Transform (``benchmarks/generated_day.py``):
- the zoo's default model (the config's ``trainer.model``) is trained by the Trainer's own
  ``train()`` with each interaction bottom (``trainer/layers/interactions.py``): concat, FM,
  DCN-V2 stacked and DCN-V2 parallel, for every seed;
- LightGBM fits one model per head on the same rows and raw features (``benchmarks/gbdt.py``);
- the oracle scores the generator's true probabilities.
``--zoo-at SIZE:RHO`` also trains every other zoo model with that day's best bottom (best for the
default model, by the mean of overall ctr and ctcvr AUC) next to its concat form.

The question a ranking team asks first: does the deep model beat a GBDT on the same features? The
verdict table answers it per day, for overall ctr and ctcvr AUC. Trained models and their AUCs are
kept under ``--workdir`` (shared with ``model_quality``), so a rerun only reports.

What each run measured is merged, day by day, into ``bottoms_quality.json`` in ``--out``, and the
markdown and PNG are drawn from that file: a day measured once stays in the tables when a later run
measures another (the prepared days and models under ``--workdir`` are scratch, ``/tmp`` by
default, and do not survive a machine's clean-up). A rerun of a day replaces its entry.
Writes ``bottoms_quality.{json,md,png}`` to ``--out``.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Tuple  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import gbdt  # noqa: E402
from benchmarks.output import parse_with_locations, save_figure, write_markdown  # noqa: E402
from benchmarks.generated_day import HEADS, oracle, prepare, summarise  # noqa: E402
from benchmarks.model_quality import MODEL_PARAMS, train_zoo_model  # noqa: E402

VARIANTS = {
    "concat": {"bottom": "concat"},  # no variant tag: the same model directories as model_quality's
    "fm": {"bottom": "fm"},
    "dcn_v2_stacked": {"bottom": "dcn_v2", "bottom_params": {"structure": "stacked"}},
    "dcn_v2_parallel": {"bottom": "dcn_v2", "bottom_params": {"structure": "parallel"}},
}
JUDGED = ("ctr", "ctcvr")
Summary = Dict[str, Dict[str, tuple]]


def train_variant(prep, model: str, variant: str, seeds: List[int], config: str, epochs: int,
                  train_missing: bool = True) -> Summary:
    """Mean ± std over seeds; None if some seed's model is not trained and ``train_missing`` is off."""
    runs = [train_zoo_model(prep, model, s, epochs, config, VARIANTS[variant],
                            None if variant == "concat" else variant, train_missing) for s in seeds]
    if any(r is None for r in runs):
        print(f"[bottoms] {model} + {variant}: not trained for every seed, left out (--report-only)", flush=True)
        return None
    result = summarise(runs)
    print(f"[bottoms] {model} + {variant}: overall " + ", ".join(
        f"{h} {result['overall'][h][0]:.4f}" for h in HEADS), flush=True)
    return result


def score_of(summary: Summary) -> float:
    """What "best" means here: the mean of overall ctr and ctcvr AUC."""
    return float(np.mean([summary["overall"][h][0] for h in JUDGED]))


def rows(results: Dict[str, Summary], orc) -> List[str]:
    lines = ["| scorer | " + " | ".join(f"{h} AUC" for h in HEADS) + " |", "|---|" + "---|" * len(HEADS),
             "| **oracle** | " + " | ".join(f"{orc['overall'][h]:.4f}" for h in HEADS) + " |"]
    for name, summary in results.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{summary['overall'][h][0]:.4f} ± {summary['overall'][h][1]:.4f}" for h in HEADS) + " |")
    return lines


def verdict(model: str, bottom: str, summary: Summary, tree: Summary) -> str:
    cells = []
    for h in JUDGED:
        (m, sm), (g, sg) = summary["overall"][h], tree["overall"][h]
        cells.append(f"{m - g:+.4f} (σ {np.hypot(sm, sg):.4f})")
    beats = all(summary["overall"][h][0] > tree["overall"][h][0] for h in JUDGED)
    return f"| {model} | {bottom} | " + " | ".join(cells) + f" | {'yes' if beats else '**no**'} |"


def chart(days: Dict[str, Tuple[dict, Dict[str, Summary]]], path: str) -> None:
    """One panel per judged head; a bar per scorer per day, the oracle's in grey."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(JUDGED), figsize=(6 * len(JUDGED), 4.5))
    names = list(dict.fromkeys(n for _, res in days.values() for n in res))
    width = 0.8 / (len(names) + 1)
    x = np.arange(len(days))
    for ax, head in zip(axes, JUDGED):
        ax.bar(x, [orc["overall"][head] for orc, _ in days.values()], width, label="oracle", color="black", alpha=0.3)
        for i, name in enumerate(names, start=1):
            missing = (np.nan, 0.0)
            ax.bar(x + i * width, [res.get(name, {}).get("overall", {}).get(head, missing)[0] for _, res in days.values()],
                   width, yerr=[res.get(name, {}).get("overall", {}).get(head, missing)[1] for _, res in days.values()],
                   label=name)
        ax.set_xticks(x + width * len(names) / 2)
        ax.set_xticklabels(list(days), rotation=15)
        lows = [min(res[n]["overall"][head][0] for n in res) for _, res in days.values()]
        ax.set_ylim(min(lows) - 0.02, max(orc["overall"][head] for orc, _ in days.values()) + 0.01)
        ax.set_title(f"overall {head} AUC")
    save_figure(fig, axes, path)


def main() -> None:
    from configs import load_config
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impressions", type=int, nargs="+", default=[200_000, 1_000_000])
    ap.add_argument("--correlations", type=float, nargs="*", default=[0.6, -0.3],
                    help="generator task_correlation per day (0.6 is the default world)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--config", default="configs/more_epochs.yaml")
    ap.add_argument("--epochs", type=int, help="default: the config's")
    ap.add_argument("--model", help="default: the config's trainer.model")
    ap.add_argument("--bottoms", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--covariate-shift", type=int, nargs="*", default=[], metavar="SIZE",
                    help="sizes at which a day of the covariate-shift generator (rho 0.6, loggen/shift.py) "
                         "is measured too")
    ap.add_argument("--zoo-at", nargs="*", default=[], metavar="SIZE:RHO",
                    help="days on which every zoo model is also trained with the best bottom")
    ap.add_argument("--zoo-seeds", type=int, help="seeds for the other zoo models (default: --seeds)")
    ap.add_argument("--report-only", action="store_true",
                    help="train and fit nothing: report what earlier runs left in --workdir, leave out the rest")
    args = parse_with_locations(ap)
    t0 = time.time()
    seeds = list(range(args.seeds))
    model = args.model or load_config(args.config).trainer["model"]
    zoo_at = {(int(z.split(":")[0]), float(z.split(":")[1])) for z in args.zoo_at}

    days: Dict[str, Tuple[dict, Dict[str, Summary]]] = {}
    verdicts, zoo_lines = [], []
    settings = [(n, rho, False) for rho in args.correlations for n in args.impressions] + [
        (n, 0.6, True) for n in args.covariate_shift]
    for n, rho, shift in settings:
        label = f"{n // 1000}k, ρ {rho:+.1f}" + (", covariate shift" if shift else "")
        prep = prepare(args.workdir, rho, n, shift, create=not args.report_only)
        if prep is None:
            print(f"[bottoms] {label}: no prepared day, left out (--report-only)", flush=True)
            continue
        orc = oracle(prep.eval_frame)
        train = not args.report_only
        results = {f"{model} + {b}": train_variant(prep, model, b, seeds, args.config, args.epochs, train)
                   for b in args.bottoms}
        results = {k: v for k, v in results.items() if v is not None}
        trees = [gbdt.cached_aucs(prep, s, fit_missing=train) for s in seeds]
        if not results or any(t is None for t in trees):
            print(f"[bottoms] {label}: not measured yet, left out (--report-only)", flush=True)
            continue
        tree = summarise(trees)
        print(f"[bottoms] {label} LightGBM: overall " + ", ".join(
            f"{h} {tree['overall'][h][0]:.4f}" for h in HEADS), flush=True)
        tried = [b for b in args.bottoms if f"{model} + {b}" in results]
        best = max(tried, key=lambda b: score_of(results[f"{model} + {b}"]))
        verdicts.append(verdict(f"{model} ({label})", best, results[f"{model} + {best}"], tree))
        results["LightGBM"] = tree
        days[label] = (orc, results)
        if (n, rho) in zoo_at and not shift:
            for other in (m for m in MODEL_PARAMS if m != model):
                for b in dict.fromkeys(["concat", best]):
                    summary = train_variant(prep, other, b, seeds[:args.zoo_seeds or len(seeds)], args.config,
                                            args.epochs, train)
                    if summary is None:
                        continue
                    zoo_lines.append(verdict(f"{other} ({label})", b, summary, tree))

    command = (f"python -m benchmarks.bottoms_quality --impressions {' '.join(map(str, args.impressions))} "
               f"--correlations {' '.join(f'{r:g}' for r in args.correlations)} --seeds {args.seeds} "
               f"--config {args.config}" + (f" --epochs {args.epochs}" if args.epochs else "")
               + (f" --covariate-shift {' '.join(map(str, args.covariate_shift))}" if args.covariate_shift else "")
               + (f" --zoo-at {' '.join(args.zoo_at)}" if args.zoo_at else "")
               + (f" --zoo-seeds {args.zoo_seeds}" if args.zoo_seeds else "")
               + (f" --bottoms {' '.join(args.bottoms)}" if args.bottoms != list(VARIANTS) else ""))
    store = os.path.join(args.out, "bottoms_quality.json")
    kept = merge(load(store), days, verdicts, zoo_lines, command, model, seeds, args.config)
    with open(store, "w") as fh:
        json.dump(kept, fh, indent=1, ensure_ascii=False)
    render(kept, args.out, time.time() - t0)


def load(path: str) -> dict:
    if not os.path.exists(path):
        return {"days": {}, "commands": []}
    with open(path) as fh:
        return json.load(fh)


def merge(kept: dict, days, verdicts: List[str], zoo_lines: List[str], command: str, model: str,
          seeds: List[int], config: str) -> dict:
    """This run's days replace the stored ones of the same label; the others stay as measured."""
    for (label, (orc, results)), line in zip(days.items(), verdicts):
        kept["days"][label] = {
            "oracle": {h: orc["overall"][h] for h in HEADS},
            "results": {name: {h: list(summary["overall"][h]) for h in HEADS} for name, summary in results.items()},
            "verdict": line, "zoo": [z for z in zoo_lines if f"({label})" in z],
            "model": model, "seeds": seeds, "config": config}
    if days and command not in kept["commands"]:
        kept["commands"].append(command)
    return kept


def render(kept: dict, out: str, seconds: float) -> None:
    days = {label: ({"overall": d["oracle"]}, {name: {"overall": {h: tuple(v) for h, v in r.items()}}
                                              for name, r in d["results"].items()})
            for label, d in kept["days"].items()}
    settings = sorted({(d["model"], tuple(d["seeds"]), d["config"]) for d in kept["days"].values()})
    md = ["# Interaction bottoms against LightGBM, on generated days", "",
          f"machine: {platform.machine()}, {os.cpu_count()} cores; "
          + "; ".join(f"model {m}, seeds {list(s)}, config {c}" for m, s, c in settings) + ". Run as:", "",
          *[f"- `{c}`" for c in kept["commands"]], "",
          "Overall AUC on each day's eval split, mean ± std over seeds. LightGBM: one model per head on "
          "the raw columns, ids as categoricals (`benchmarks/gbdt.py`).", ""]
    for label, (orc, results) in days.items():
        md += [f"## {label}", "", *rows(results, orc), ""]
    head = ("| model (day) | bottom | " + " | ".join(f"{h} AUC − LightGBM" for h in JUDGED)
            + " | beats LightGBM on both |")
    md += ["## Does the best bottom beat the GBDT?", "",
           f"Best bottom per day: the highest mean of overall {' and '.join(JUDGED)} AUC. σ combines both "
           "standard deviations over seeds.", "", head, "|---|---|" + "---|" * len(JUDGED) + "---|",
           *[d["verdict"] for d in kept["days"].values()], ""]
    zoo_lines = [z for d in kept["days"].values() for z in d["zoo"]]
    if zoo_lines:
        md += ["## Every zoo model, concat and the default model's best bottom", "",
               "Seeds per zoo model as in the command that measured the day (`--zoo-seeds`); with one seed "
               "σ is LightGBM's alone.", "", head,
               "|---|---|" + "---|" * len(JUDGED) + "---|", *zoo_lines, ""]
    md += ["![bottoms](bottoms_quality.png)", "", f"this run: {seconds:.0f}s"]
    chart(days, os.path.join(out, "bottoms_quality.png"))
    write_markdown(out, "bottoms_quality", md)


if __name__ == "__main__":
    main()
