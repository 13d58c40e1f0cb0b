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
