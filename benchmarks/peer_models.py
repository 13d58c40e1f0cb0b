"""The zoo models and their DeepCTR namesakes in the sizes of ``../shared/PERFORMANCE.md``, built on the same
features, for the side-by-side benchmarks (``adult_quality``, ``train_throughput``).

Both sides get the same layer sizes and embedding width. DeepCTR keeps its own defaults otherwise
(``l2_reg_embedding=1e-5``, its initialisers): that is the peer as its users run it. Project models with
no DeepCTR namesake (OMoE, AITM) are compared with the best DeepCTR model of the run. ESMM's DeepCTR
namesake outputs ctr and ctr x cvr, which fits a funnel but not two independent tasks; on such data
the project's ESMM (towers on shared embeddings) is compared with the best DeepCTR model as well.
AITM is a funnel model: it predicts ctcvr <= ctr and serves cvr = ctcvr / ctr, so its second head
cannot be a task independent of the first (on Adult, never married is not a subset of high income);
its Adult row is reported but says nothing about its trainability.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

# project model -> (its parameters, DeepCTR model name or None, DeepCTR parameters)
CONFIGS: Dict[str, Tuple[Dict[str, Any], Optional[str], Dict[str, Any]]] = {
    "shared_bottom": ({"bottom_dnn_hidden_units": [256, 128], "tower_dnn_hidden_units": [64]},
                      "SharedBottom", {"bottom_dnn_hidden_units": (256, 128), "tower_dnn_hidden_units": (64,)}),
    "esmm": ({"tower_dnn_hidden_units": [256, 128, 64]},
             "ESMM", {"tower_dnn_hidden_units": (256, 128, 64)}),
    "mmoe": ({"num_experts": 4, "expert_dnn_hidden_units": [256, 128], "tower_dnn_hidden_units": [64]},
             "MMOE", {"num_experts": 4, "expert_dnn_hidden_units": (256, 128), "tower_dnn_hidden_units": (64,)}),
    "omoe": ({"num_experts": 4, "expert_dnn_hidden_units": [256, 128], "tower_dnn_hidden_units": [64]}, None, {}),
    "ple": ({"num_levels": 2, "specific_expert_num": 1, "shared_expert_num": 1,
             "expert_dnn_hidden_units": [256, 128], "tower_dnn_hidden_units": [64]},
            "PLE", {"num_levels": 2, "specific_expert_num": 1, "shared_expert_num": 1,
                    "expert_dnn_hidden_units": (256, 128), "tower_dnn_hidden_units": (64,)}),
    "aitm": ({"tower_dnn_hidden_units": [256, 128, 64]}, None, {}),
    # the MMoE paper's soft-sharing baselines, at Shared-Bottom's sizes per task; no DeepCTR namesake
    "single_task": ({"bottom_dnn_hidden_units": [256, 128], "tower_dnn_hidden_units": [64]}, None, {}),
    "cross_stitch": ({"bottom_dnn_hidden_units": [256, 128], "tower_dnn_hidden_units": [64]}, None, {}),
    "l2_constrained": ({"bottom_dnn_hidden_units": [256, 128], "tower_dnn_hidden_units": [64]}, None, {}),
    "gmsl": ({"bottom_dnn_hidden_units": [256, 128], "task_dnn_hidden_units": [64], "gru_units": 32,
              "tower_dnn_hidden_units": [32]}, None, {}),
}


def project_features(sparse: Dict[str, int], dense: List[str], embedding_dim: int):
    """``InputFeature``s for arrays already encoded (ids, standardised numbers): no Transform graph."""
    from schemas import Feature
    from trainer.features import InputFeature
    return ([InputFeature(Feature(name, "categorical", embedding_dim=embedding_dim), size)
             for name, size in sparse.items()]
            + [InputFeature(Feature(name, "numeric"), 0) for name in dense])


def build_project(name: str, sparse: Dict[str, int], dense: List[str], embedding_dim: int,
                  model_params: Optional[Dict[str, Any]] = None):
    """The zoo model ``name`` in this module's sizes (``model_params`` added on top), via ``build_model``."""
    from trainer.models import build_model
    return build_model(name, project_features(sparse, dense, embedding_dim),
                       dict(CONFIGS[name][0], **(model_params or {})))


def deepctr_features(sparse: Dict[str, int], dense: List[str], embedding_dim: int):
    from deepctr.feature_column import DenseFeat, SparseFeat
    return ([SparseFeat(name, vocabulary_size=size, embedding_dim=embedding_dim) for name, size in sparse.items()]
            + [DenseFeat(name, 1) for name in dense])


def build_deepctr(name: str, columns, tasks: Tuple[str, str], seed: int):
    import deepctr.models
    _, peer, params = CONFIGS[name]
    return getattr(deepctr.models, peer)(columns, task_names=tasks, seed=seed, **params)
