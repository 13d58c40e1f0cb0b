"""One module per architecture, named after its paper. ``build_model`` picks one by config name."""
from __future__ import annotations

from typing import Any, Dict, List

from trainer.features import InputFeature


def build_model(name: str, features: List[InputFeature], params: Dict[str, Any]):
    if name == "esmm":
        from trainer.models.esmm import build_esmm
        return build_esmm(features, **params)
    raise ValueError(f"unknown model {name!r}; available: esmm")
