"""One module per architecture, named after its paper. ``build_model`` picks one by config name.

Every family also takes ``initializers`` (``trainer/initializers.py``)."""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Dict, List, Optional

from trainer import initializers
from trainer.layers import interactions, penalty
from trainer.features import InputFeature

MODELS = {
    "shared_bottom": ("trainer.models.shared_bottom", "build_shared_bottom"),
    "esmm": ("trainer.models.esmm", "build_esmm"),
    "mmoe": ("trainer.models.mmoe", "build_mmoe"),
    "omoe": ("trainer.models.mmoe", "build_omoe"),
    "ple": ("trainer.models.ple", "build_ple"),
    "aitm": ("trainer.models.aitm", "build_aitm"),
    # the soft-sharing and single-task baselines of the MMoE paper's tables
    "single_task": ("trainer.models.single_task", "build_single_task"),
    "cross_stitch": ("trainer.models.cross_stitch", "build_cross_stitch"),
    "l2_constrained": ("trainer.models.l2_constrained", "build_l2_constrained"),
    # task-order models: the funnel's order is part of the architecture
    "gmsl": ("trainer.models.gmsl", "build_gmsl"),
    "bayes_chain": ("trainer.models.bayes_chain", "build_bayes_chain"),
    # multi-domain (multi-scene) backbones; any multi-task middle above except aitm sits on them
    "transfer": ("trainer.models.transfer", "build_transfer"),
    "star": ("trainer.models.star", "build_star"),
}


def model_params(name: str) -> List[str]:
    module, fn = MODELS[name]
    builder = getattr(importlib.import_module(module), fn)
    return [p for p in inspect.signature(builder).parameters if p not in ("features", "one_gate", "tasks")] + [
        "initializers", "l2_embedding_scope", "bottom", "bottom_params"]


def needs_id_counts(params: Dict[str, Any]) -> bool:
    """Whether the model's embedding penalty is scaled by id frequencies (``layers/penalty.py``)."""
    return bool(params.get("l2_embedding")) and penalty.check(params.get("l2_embedding_scope")) == "batch"


def build_model(name: str, features: List[InputFeature], params: Dict[str, Any],
                id_counts: Optional[Dict[str, Any]] = None, tasks: Any = None):
    """Unknown names and parameters the family does not take are errors, not silently ignored.
    ``id_counts`` (feature -> occurrences per id, ``layers.penalty.count_ids``) scales the
    ``l2_embedding_scope: batch`` penalty. ``tasks``: the funnel (schemas/tasks.py; None: the
    default click -> conversion)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    accepted = model_params(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} does not take {unknown}; it takes {accepted}")
    module, fn = MODELS[name]
    params = dict(params)
    with initializers.using(params.pop("initializers", None)), \
            penalty.using(params.pop("l2_embedding_scope", None), id_counts), \
            interactions.using(params.pop("bottom", None), params.pop("bottom_params", None)):
        return getattr(importlib.import_module(module), fn)(features, tasks=tasks, **params)
