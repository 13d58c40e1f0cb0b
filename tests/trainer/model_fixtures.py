"""Small inputs shared by the model tests."""
import numpy as np

from schemas import Feature
from trainer.features import InputFeature

FEATURES = [
    InputFeature(Feature("scene", "scene", embedding_dim=4), 5),
    InputFeature(Feature("item", "hashed", embedding_dim=8, hash_buckets=100), 100),
    InputFeature(Feature("price", "numeric"), 0),
]

SMALL = {
    "shared_bottom": {"bottom_dnn_hidden_units": [16], "tower_dnn_hidden_units": [8]},
    "esmm": {"tower_dnn_hidden_units": [16, 8]},
    "mmoe": {"num_experts": 3, "expert_dnn_hidden_units": [16], "tower_dnn_hidden_units": [8]},
    "omoe": {"num_experts": 3, "expert_dnn_hidden_units": [16], "tower_dnn_hidden_units": [8]},
    "ple": {"num_levels": 2, "specific_expert_num": 2, "shared_expert_num": 1, "expert_dnn_hidden_units": [16],
            "tower_dnn_hidden_units": [8]},
    "aitm": {"tower_dnn_hidden_units": [16, 8]},
    "transfer": {"tower_dnn_hidden_units": [16, 8], "domain_tower_dnn_hidden_units": [8],
                 "attention_hidden_units": [4, 4]},
    "star": {"tower_dnn_hidden_units": [16, 8]},
    "single_task": {"bottom_dnn_hidden_units": [16], "tower_dnn_hidden_units": [8]},
    "cross_stitch": {"bottom_dnn_hidden_units": [16, 8], "tower_dnn_hidden_units": [8]},
    "l2_constrained": {"bottom_dnn_hidden_units": [16, 8], "tower_dnn_hidden_units": [8], "l2_distance": 0.01},
    "gmsl": {"bottom_dnn_hidden_units": [16], "task_dnn_hidden_units": [8], "gru_units": 6,
             "tower_dnn_hidden_units": [4]},
    "bayes_chain": {"bottom_dnn_hidden_units": [16], "tower_dnn_hidden_units": [8]},
}


def batch(n=256, seed=0):
    rng = np.random.default_rng(seed)
    return {"scene": rng.integers(0, 5, (n, 1)), "item": rng.integers(0, 100, (n, 1)),
            "price": rng.normal(size=(n, 1)).astype("float32")}


def labels(n, seed=0):
    """Click and conversion labels for ``batch``, by head: ctr (click) and ctcvr (click and conversion)."""
    rng = np.random.default_rng(seed)
    click = (rng.random((n, 1)) < 0.3).astype("float32")
    return {"ctr": click, "ctcvr": click * (rng.random((n, 1)) < 0.3).astype("float32")}
