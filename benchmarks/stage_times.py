"""Per-stage wall time of pipeline runs, read from ML Metadata execution timestamps.

    python -m benchmarks.stage_times --metadata work/tfx/metadata.sqlite
"""
from __future__ import annotations

import argparse
import collections
from typing import Dict, List, Tuple

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2


RUN_CONTEXT_TYPES = ("pipeline_run", "run")  # IR-based runners / the legacy Airflow runner


def stage_times(metadata_path: str) -> List[List[Tuple[str, float]]]:
    """One list per pipeline run (grouped by MLMD's run context), oldest first: (component, seconds)."""
    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata_path
    cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(cfg)
    names = {t.id: t.name.split(".")[-1] for t in store.get_execution_types()}
    run_types = {t.id for t in store.get_context_types() if t.name in RUN_CONTEXT_TYPES}
    runs: Dict[int, List[Tuple[str, float]]] = {}  # insertion order = order of each run's first execution
    for ex in sorted(store.get_executions(), key=lambda e: e.id):
        run = [c.id for c in store.get_contexts_by_execution(ex.id) if c.type_id in run_types]
        seconds = (ex.last_update_time_since_epoch - ex.create_time_since_epoch) / 1000.0
        runs.setdefault(run[0] if run else -1, []).append((names[ex.type_id], seconds))
    return list(runs.values())


def format_table(runs: List[List[Tuple[str, float]]]) -> str:
    stages: Dict[str, List[float]] = collections.defaultdict(list)
    for run in runs:
        for name, s in run:
            stages[name].append(s)
    lines = ["| stage | " + " | ".join(f"run {i + 1} (s)" for i in range(len(runs))) + " | share of run 1 |",
             "|---|" + "---|" * len(runs) + "---|"]
    total1 = sum(s for _, s in runs[0]) if runs else 0.0
    order = [n for n, _ in runs[0]] if runs else []
    for name in order:
        cells = " | ".join(f"{v:.1f}" for v in stages[name])
        share = stages[name][0] / total1 if total1 else 0.0
        lines.append(f"| {name} | {cells} | {share:.0%} |")
    lines.append("| **total of stages** | " + " | ".join(f"{sum(s for _, s in r):.1f}" for r in runs) + " | 100% |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--metadata", required=True, help="ML Metadata SQLite file of the runs")
    args = ap.parse_args()
    print(format_table(stage_times(args.metadata)))


if __name__ == "__main__":
    main()
