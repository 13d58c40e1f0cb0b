"""How the quality benchmarks write what they measured: a markdown table printed and saved, a chart saved."""
from __future__ import annotations

import os
from typing import List


def write_markdown(out_dir: str, name: str, lines: List[str]) -> str:
    """Writes ``<out_dir>/<name>.md``, prints it and returns it."""
    text = "\n".join(lines)
    with open(os.path.join(out_dir, f"{name}.md"), "w") as fh:
        fh.write(text + "\n")
    print(text)
    return text


def save_figure(fig, axes, path: str) -> None:
    """The legend on the first panel, a tight layout, 110 dpi."""
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_with_locations(ap) -> "argparse.Namespace":  # noqa: F821
    """Adds ``--workdir`` (prepared days and trained models, reused across runs) and ``--out`` (where
    the tables and charts go, created), then parses."""
    ap.add_argument("--workdir", default="/tmp/model-quality")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    return args


def auc_bars(results, orc, heads, path: str, bound=None) -> None:
    """One panel per head: AUC per slice, the oracle's bar, each model's mean with its std over seeds
    (``results``: model -> slice -> head -> (mean, std)), and the matched-form mark if given."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    slices = list(orc)
    fig, axes = plt.subplots(1, len(heads), figsize=(4.5 * len(heads), 4.5), sharey=False)
    width = 0.8 / (len(results) + 1)
    for ax, head in zip(axes, heads):
        x = np.arange(len(slices))
        ax.bar(x, [orc[s][head] for s in slices], width, label="oracle", color="black", alpha=0.3)
        if bound:
            ax.plot(x + width * len(results) / 2, [bound[s][head] for s in slices], "k_", markersize=40,
                    label="matched form")
        for i, (model, summary) in enumerate(results.items(), start=1):
            ax.bar(x + i * width, [summary[s][head][0] for s in slices], width,
                   yerr=[summary[s][head][1] for s in slices], label=model)
        ax.set_xticks(x + width * len(results) / 2)
        ax.set_xticklabels(slices, rotation=30, ha="right")
        ax.set_ylim(0.5, 1.0)
        ax.set_title(f"{head} AUC")
    save_figure(fig, axes, path)
