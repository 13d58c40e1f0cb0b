"""Lists the Transform vocabularies of the latest (or a given day's) run: the sizes a model's embeddings get."""
from __future__ import annotations

from typing import List, Optional, Tuple

from configs import PipelineConfig
from pipeline_components.reporting.report import open_store
from schemas import load_feature_spec


def latest_transform_graph(config: PipelineConfig) -> str:
    store = open_store(config)
    graphs = [a for a in store.get_artifacts_by_type("TransformGraph") if a.state == a.LIVE]
    if not graphs:
        raise FileNotFoundError(f"no Transform output recorded in {config.metadata_path}: run the pipeline first")
    return max(graphs, key=lambda a: a.id).uri


def vocabularies(transform_graph_uri: str, feature_spec_path: str) -> List[Tuple[str, str, int, int, List[str]]]:
    """(feature, kind, vocabulary size, OOV buckets, most frequent values) per vocabulary feature of the
    feature spec the run was configured with (``schemas.features`` of its config)."""
    import tensorflow_transform as tft
    out = tft.TFTransformOutput(transform_graph_uri)
    rows = []
    for f in load_feature_spec(feature_spec_path).by_kind("categorical", "scene"):
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in out.vocabulary_by_name(f.name)]
        rows.append((f.name, f.kind, len(values), f.num_oov_buckets, values[:5]))
    return rows


def format_vocabularies(rows, uri: Optional[str] = None) -> str:
    lines = [f"vocabularies of {uri}" if uri else "vocabularies", "",
             "| feature | kind | size | OOV buckets | most frequent |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {k} | {size:,} | {oov} | {', '.join(top)} |" for n, k, size, oov, top in rows]
    return "\n".join(lines)
