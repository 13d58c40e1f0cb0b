"""Loaders for the raw event schema and the feature spec in this folder.

Every other package reads feature and column names through here, so adding a
feature is an edit to ``features.yaml`` and nothing else.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar

import yaml

T = TypeVar("T")

SCHEMA_DIR = os.path.dirname(os.path.abspath(__file__))
RAW_EVENTS_PATH = os.path.join(SCHEMA_DIR, "raw_events.yaml")
FEATURE_SPEC_PATH = os.path.join(SCHEMA_DIR, "features.yaml")
TFDV_SCHEMA_PATH = os.path.join(SCHEMA_DIR, "schema.pbtxt")

FEATURE_KINDS = ("categorical", "hashed", "numeric", "bucketized", "scene")
NUMERIC_SCALES = ("z_score", "min_max", "none")

# The raw-log layout (raw_events.yaml): <logs_root>/<log>/date=YYYY-MM-DD/*.parquet,
# partitioned by the UTC day of each event's timestamp (int64 microseconds).
EPOCH = dt.date(1970, 1, 1)
DAY_US = 86_400 * 1_000_000


def partition_dir(logs_root: str, log: str, date: dt.date) -> str:
    return os.path.join(logs_root, log, f"date={date:%Y-%m-%d}")


@dataclasses.dataclass(frozen=True)
class Feature:
    name: str
    kind: str
    embedding_dim: int = 8
    top_k: Optional[int] = None
    frequency_threshold: int = 0
    num_oov_buckets: int = 1
    hash_buckets: int = 0
    log1p: bool = False
    scale: str = "z_score"
    num_buckets: int = 0
    source: Optional[str] = None  # raw column; defaults to the feature's name

    @property
    def source_column(self) -> str:
        return self.source or self.name

    @property
    def is_sparse(self) -> bool:
        """Fed to the model as an integer index into an embedding table."""
        return self.kind in ("categorical", "hashed", "bucketized", "scene")


def scene_of(items: Sequence[T], feature_of: Callable[[T], Feature] = lambda f: f) -> T:
    """The one item whose feature is of kind ``scene``: the single rule for finding the scene, used by
    the gate, the Evaluator's slices, the report and the multi-domain models alike."""
    found = [item for item in items if feature_of(item).kind == "scene"]
    if len(found) != 1:
        raise ValueError(f"the feature spec must declare exactly one feature of kind 'scene' (the slice every "
                         f"metric is cut by), found {[feature_of(i).name for i in found]}")
    return found[0]


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    features: List[Feature]
    labels: List[str]
    passthrough: List[str]

    @property
    def scene_feature(self) -> str:
        return scene_of(self.features).name

    def by_kind(self, *kinds: str) -> List[Feature]:
        return [f for f in self.features if f.kind in kinds]

    @property
    def raw_feature_names(self) -> List[str]:
        return [f.name for f in self.features]


def _load_yaml(path: str) -> Dict[str, Any]:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _with_base(path: str, raw: Dict[str, Any]) -> Dict[str, Any]:
    """``extends: <spec>`` (relative to this file): the base spec's features, labels and passthrough
    columns, with this file's added (or replacing those of the same name). Why: a variant (a funnel
    with one more label) states only what differs, so a feature added to the base reaches it."""
    base = raw.pop("extends", None)
    if not base:
        return raw
    parent = _with_base(base, _load_yaml(os.path.join(os.path.dirname(path), base)))
    merged = dict(parent)
    for key in ("features", "labels"):
        merged[key] = dict(parent.get(key) or {}, **(raw.get(key) or {}))
    merged["passthrough"] = list(dict.fromkeys(list(parent.get("passthrough") or []) + list(raw.get("passthrough") or [])))
    return merged


@functools.lru_cache(maxsize=8)
def load_feature_spec(path: str = FEATURE_SPEC_PATH) -> FeatureSpec:
    raw = _with_base(path, _load_yaml(path))
    features = []
    for name, attrs in (raw.get("features") or {}).items():
        attrs = dict(attrs or {})
        kind = attrs.pop("kind", None)
        if kind not in FEATURE_KINDS:
            raise ValueError(f"{path}: feature '{name}' has kind {kind!r}; expected one of {FEATURE_KINDS}")
        unknown = set(attrs) - {f.name for f in dataclasses.fields(Feature)}
        if unknown:
            raise ValueError(f"{path}: feature '{name}' has unknown attributes {sorted(unknown)}")
        if kind == "hashed" and int(attrs.get("hash_buckets", 0)) <= 0:
            raise ValueError(f"{path}: hashed feature '{name}' needs hash_buckets > 0")
        if kind == "bucketized" and int(attrs.get("num_buckets", 0)) < 2:
            raise ValueError(f"{path}: bucketized feature '{name}' needs num_buckets >= 2")
        if attrs.get("scale", "z_score") not in NUMERIC_SCALES:
            raise ValueError(f"{path}: feature '{name}' has scale {attrs['scale']!r}; expected one of {NUMERIC_SCALES}")
        features.append(Feature(name=name, kind=kind, **attrs))
    spec = FeatureSpec(
        features=features,
        labels=list((raw.get("labels") or {}).keys()),
        passthrough=list(raw.get("passthrough") or []),
    )
    spec.scene_feature  # validates exactly one scene feature
    return spec


@functools.lru_cache(maxsize=8)
def load_raw_schema(path: str = RAW_EVENTS_PATH) -> Dict[str, Any]:
    raw = _load_yaml(path)
    for log, body in raw["logs"].items():
        for field, attrs in body["fields"].items():
            if attrs.get("allowed") == "scenes":
                attrs["allowed"] = list(raw["scenes"])
    return raw


def scenes(path: str = RAW_EVENTS_PATH) -> List[str]:
    return list(load_raw_schema(path)["scenes"])
