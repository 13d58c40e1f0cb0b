"""What the multi-domain backbones share: the scene input, the multi-task middles they accept, the heads.

A multi-domain model = backbone (transfer model or STAR) + any multi-task
middle of the zoo (``multi_task``: how each task's tower input is formed from
the backbone's representation) + scene-aware towers and the funnel's heads, so one
served model predicts every head (default ctr, cvr and ctcvr) for every scene.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from schemas import scene_of
from trainer.features import InputFeature
from schemas.tasks import Funnel
from trainer.models.common import chain_heads
from trainer.models.cross_stitch import cross_stitch_middle
from trainer.models.esmm import esmm_middle
from trainer.models.gmsl import gmsl_middle
from trainer.models.l2_constrained import l2_constrained_middle
from trainer.models.mmoe import mmoe_middle, omoe_middle
from trainer.models.ple import ple_middle
from trainer.models.shared_bottom import shared_bottom_middle

MIDDLES: Dict[str, Callable] = {
    "esmm": esmm_middle,
    "shared_bottom": shared_bottom_middle,
    "mmoe": mmoe_middle,
    "omoe": omoe_middle,
    "ple": ple_middle,
    "cross_stitch": cross_stitch_middle,
    "l2_constrained": l2_constrained_middle,
    "gmsl": gmsl_middle,
}


def scene_feature(features: List[InputFeature]) -> Tuple[InputFeature, int]:
    """(the scene feature, number of scenes). The Transform's OOV bucket is not a scene."""
    f = scene_of(features, lambda i: i.feature)
    return f, (len(f.vocabulary) if f.vocabulary else f.cardinality)


def scene_inputs(features: List[InputFeature]):
    """(raw keras inputs, the inputs the layers read, scene one-hot). The layers read the scene
    through ``DomainIndex``, so an unknown scene is the most frequent one everywhere, its
    embedding included."""
    from trainer.features import build_inputs
    from trainer.layers import DomainIndex
    scene, num_domains = scene_feature(features)
    inputs = build_inputs(features)
    name = scene.feature.name
    onehot = DomainIndex(num_domains, name="domain")(inputs[name])
    cleaned = dict(inputs, **{name: DomainIndex(num_domains, one_hot=False, name="scene_index")(inputs[name])})
    return inputs, cleaned, onehot


def middle(name: str, params: Optional[Mapping[str, Any]], x, tasks: List[str]) -> Dict[str, object]:
    if name not in MIDDLES:
        raise ValueError(f"multi_task {name!r} cannot sit on a multi-domain backbone; "
                         f"available: {', '.join(sorted(MIDDLES))}")
    fn = MIDDLES[name]
    accepted = [p for p in inspect.signature(fn).parameters if p not in ("x", "shared", "tasks", "one_gate")]
    unknown = sorted(set(params or {}) - set(accepted))
    if unknown:
        raise ValueError(f"multi_task_params {unknown} are not parameters of {name!r}; it takes {accepted} "
                         "(towers are the multi-domain model's own parameters)")
    return fn(x, tasks, **dict(params or {}))


def funnel_outputs(logits: Dict[str, object], funnel: Funnel) -> Dict[str, object]:
    """Each task's scene-aware tower output as its head (sigmoid for a binary task, the value itself
    for a regression task), and the entire-space products down the funnel."""
    import tf_keras as keras
    heads = {t.name: keras.layers.Activation("sigmoid" if t.binary else "linear", name=t.name)(logits[t.name])
             for t in funnel.tasks}
    return chain_heads(heads, funnel)
