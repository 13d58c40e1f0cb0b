"""Feature-interaction bottoms: what every zoo model puts between its field embeddings and its MLPs.

``model_params.bottom`` chooses one per model (``bottom_params`` tunes it):

- ``concat`` (default): the field embeddings and numeric features side by side. An MLP on top has
  to learn multiplicative interactions (segment × category affinity, a price sensitivity that
  depends on the user) from sums of ReLUs, which it does poorly.
- ``fm``: the same plus every pairwise dot product of the fields' vectors, the second-order term of
  factorisation machines (Rendle, ICDM 2010) as DeepFM (Guo et al., IJCAI 2017) and DLRM (Naumov
  et al., 2019) feed it. Fields whose embedding width differs from ``fm_dim`` (default: the widest)
  are mapped to it linearly; a numeric feature is the field vector x·v, as in DeepFM.
  ``bottom_params``: ``fm_dim``.
- ``dcn_v2``: the cross network of DCN-V2 (Wang et al., WWW 2021), x_{l+1} = x_0 ⊙ (U_l V_lᵀ x_l + b_l)
  + x_l, with low-rank U_l, V_l (``rank``; 0 = full-rank W_l). ``structure: stacked`` feeds x_L to
  the model's experts and towers (the paper's stacked form, the MLP on top of the cross network);
  ``parallel`` feeds [x_L, x_0], so the towers' MLP sees the raw embeddings beside the crossed ones
  (the paper's parallel form, with the two joined at the towers' input rather than at the logit).
  ``bottom_params``: ``cross_layers`` (2), ``rank`` (32), ``structure``.

Why a scope rather than an argument on every model family: like the initialisers
(``trainer/initializers.py``), one choice applies to every family's input side and matters only
while a model is built.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Mapping, Optional

import tensorflow as tf
import tf_keras as keras

from trainer import initializers

BOTTOMS = ("concat", "fm", "dcn_v2")
PARAMS = {"concat": {}, "fm": {"fm_dim": 0}, "dcn_v2": {"cross_layers": 2, "rank": 32, "structure": "stacked"}}
_current: Dict[str, Any] = {"bottom": "concat"}


def check(bottom: Optional[str], params: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    bottom = bottom or "concat"
    if bottom not in BOTTOMS:
        raise ValueError(f"model_params.bottom must be one of {list(BOTTOMS)}, got {bottom!r}")
    params = dict(params or {})
    unknown = sorted(set(params) - set(PARAMS[bottom]))
    if unknown:
        raise ValueError(f"model_params.bottom_params {unknown} do not apply to bottom {bottom!r}; "
                         f"it takes {sorted(PARAMS[bottom])}")
    chosen = dict(PARAMS[bottom], **params, bottom=bottom)
    if bottom == "dcn_v2":
        if chosen["structure"] not in ("stacked", "parallel"):
            raise ValueError(f"model_params.bottom_params.structure must be 'stacked' or 'parallel', "
                             f"got {chosen['structure']!r}")
        if int(chosen["cross_layers"]) < 1 or int(chosen["rank"]) < 0:
            raise ValueError("model_params.bottom_params: cross_layers must be >= 1 and rank >= 0")
    return chosen


@contextlib.contextmanager
def using(bottom: Optional[str], params: Optional[Mapping[str, Any]] = None) -> Iterator[Dict[str, Any]]:
    global _current
    previous, _current = _current, check(bottom, params)
    try:
        yield _current
    finally:
        _current = previous


def interact(parts: List[Any], prefix: str = "emb"):
    """The bottom's output from the per-field tensors (sparse fields' embeddings (batch, d_i), numeric
    features (batch, 1)), in the scope's choice."""
    x0 = keras.layers.Concatenate(name=f"{prefix}_concat")(parts)
    chosen = _current
    if chosen["bottom"] == "fm":
        widths = [int(p.shape[-1]) for p in parts]
        dots = FMInteraction(widths, int(chosen["fm_dim"]) or max(widths), name=f"{prefix}_fm")(x0)
        return keras.layers.Concatenate(name=f"{prefix}_fm_concat")([x0, dots])
    if chosen["bottom"] == "dcn_v2":
        crossed = CrossNet(int(chosen["cross_layers"]), int(chosen["rank"]), name=f"{prefix}_cross")(x0)
        if chosen["structure"] == "parallel":
            return keras.layers.Concatenate(name=f"{prefix}_cross_concat")([crossed, x0])
        return crossed
    return x0


@keras.utils.register_keras_serializable(package="rankpipe")
class FMInteraction(keras.layers.Layer):
    """Pairwise dot products ⟨v_i, v_j⟩, i < j, of the fields of a concatenated input.

    ``widths`` are the fields' widths in input order: a field of width ``dim`` is its own vector, a
    field of width 1 (a numeric feature) becomes x·v with a learned v, and any other width is mapped
    to ``dim`` by a learned matrix. Returns (batch, F(F−1)/2)."""

    def __init__(self, widths: List[int], dim: int, **kwargs):
        super().__init__(**kwargs)
        self.widths = [int(w) for w in widths]
        self.dim = int(dim)
        if len(self.widths) < 2:
            raise ValueError("an FM bottom needs at least two fields")

    def build(self, input_shape):
        self.maps = [None if w == self.dim else self.add_weight(
            name=f"field_{i}_map", shape=(w, self.dim), initializer=initializers.dense())
            for i, w in enumerate(self.widths)]
        super().build(input_shape)

    def call(self, x):
        fields = []
        for field, m in zip(tf.split(x, self.widths, axis=-1), self.maps):
            fields.append(field if m is None else tf.matmul(field, m))
        v = tf.stack(fields, axis=1)                      # (batch, F, dim)
        gram = tf.matmul(v, v, transpose_b=True)          # (batch, F, F)
        n = len(self.widths)
        upper = [(i, j) for i in range(n) for j in range(i + 1, n)]
        flat = tf.reshape(gram, [-1, n * n])
        return tf.gather(flat, [i * n + j for i, j in upper], axis=1)

    def compute_output_shape(self, input_shape):
        n = len(self.widths)
        return (input_shape[0], n * (n - 1) // 2)

    def get_config(self):
        return dict(super().get_config(), widths=self.widths, dim=self.dim)


@keras.utils.register_keras_serializable(package="rankpipe")
class CrossNet(keras.layers.Layer):
    """DCN-V2's cross layers: x_{l+1} = x_0 ⊙ (U_l (V_lᵀ x_l) + b_l) + x_l; rank 0 = a full W_l."""

    def __init__(self, num_layers: int = 2, rank: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = int(num_layers)
        self.rank = int(rank)

    def build(self, input_shape):
        d = int(input_shape[-1])
        full = self.rank == 0 or self.rank >= d
        self.v = [] if full else [self.add_weight(name=f"v_{i}", shape=(d, self.rank),
                                                  initializer=initializers.dense()) for i in range(self.num_layers)]
        self.u = [self.add_weight(name=f"{'w' if full else 'u'}_{i}", shape=(d if full else self.rank, d),
                                  initializer=initializers.dense()) for i in range(self.num_layers)]
        self.b = [self.add_weight(name=f"b_{i}", shape=(d,), initializer="zeros") for i in range(self.num_layers)]
        super().build(input_shape)

    def call(self, x0):
        x = x0
        for i in range(self.num_layers):
            low = tf.matmul(x, self.v[i]) if self.v else x
            x = x0 * (tf.matmul(low, self.u[i]) + self.b[i]) + x
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return dict(super().get_config(), num_layers=self.num_layers, rank=self.rank)
