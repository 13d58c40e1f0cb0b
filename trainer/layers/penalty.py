"""The L2 penalty on embedding tables, over the whole table or over the rows a batch looked up.

``model_params.l2_embedding`` is its weight; ``model_params.l2_embedding_scope`` says where it applies:

- ``table`` (default): Keras' ``embeddings_regularizer``, λ·Σ‖w‖² over every row at every step. Its
  gradient is dense, so every row of every table is decayed and moved each step, and the sparse
  update of ``lazy_adam`` becomes a dense one.
- ``batch``: the mini-batch aware regularisation of Zhou et al. ("Deep Interest Network", KDD 2018):
  λ·Σ_j ‖w_j‖² / n_j over the distinct rows j the batch looked up, n_j being how often id j occurs
  in the training window. Rows not in the batch are untouched, so the gradient stays sparse and
  ``lazy_adam`` stays lazy; and over an epoch every row gets about the same total penalty however
  rare its id, where ``table`` shrinks a rare id's row at every step while the data moves it at
  a few. The Trainer counts n_j in one pass over the window before training (``count_ids``; with
  ``input_cache: memory`` that pass fills the cache). Without counts (a model built outside the
  Trainer) n_j = 1. The multi-scene ``transfer`` model's per-scene tables use n_j = 1.

Why a scope rather than an argument on every model family: like the initialisers
(``trainer/initializers.py``), the choice applies to every embedding table of the zoo, and only
while a model is built.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

SCOPES = ("table", "batch")
_current = "table"
_counts: Dict[str, np.ndarray] = {}


def check(scope: Optional[str]) -> str:
    scope = scope or "table"
    if scope not in SCOPES:
        raise ValueError(f"model_params.l2_embedding_scope must be one of {list(SCOPES)}, got {scope!r}")
    return scope


@contextlib.contextmanager
def using(scope: Optional[str], counts: Optional[Mapping[str, np.ndarray]] = None) -> Iterator[str]:
    """``counts``: feature name -> occurrences of each id (index) in the training window."""
    global _current, _counts
    previous = _current, _counts
    _current, _counts = check(scope), dict(counts or {})
    try:
        yield _current
    finally:
        _current, _counts = previous


def current() -> str:
    return _current


def counts(feature: str) -> Optional[np.ndarray]:
    return _counts.get(feature)


def count_ids(dataset: tf.data.Dataset, features: Sequence[str], cardinality: Mapping[str, int]) -> Dict[str, np.ndarray]:
    """Occurrences of every id of each of ``features`` in one pass over ``dataset`` ((x, y) batches)."""
    totals = {f: np.zeros(cardinality[f], np.int64) for f in features}
    for x, _ in dataset:
        for f in features:
            totals[f] += np.bincount(x[f].numpy().ravel(), minlength=cardinality[f])[:cardinality[f]]
    return totals


def table_regularizer(l2: float):
    """The ``embeddings_regularizer`` of a table: Keras' L2 in the table scope, none in the batch scope."""
    return keras.regularizers.l2(l2) if l2 and _current == "table" else None


def batch_l2(ids: tf.Tensor, rows: tf.Tensor, l2: float, inverse_counts: Optional[tf.Tensor] = None) -> tf.Tensor:
    """λ·Σ_j ‖w_j‖² / n_j over the distinct ids j of the batch: each looked-up row weighted by
    1 / (its count in the batch) and by ``inverse_counts`` (1 / n_j per id) when given."""
    flat = tf.reshape(tf.cast(ids, tf.int64), [-1])
    _, index, in_batch = tf.unique_with_counts(flat)
    weight = 1.0 / tf.cast(tf.gather(in_batch, index), rows.dtype)
    if inverse_counts is not None:
        weight *= tf.gather(inverse_counts, flat)
    squares = tf.reduce_sum(tf.square(tf.reshape(rows, [tf.shape(flat)[0], -1])), axis=-1)
    return l2 * tf.reduce_sum(weight * squares)


@keras.utils.register_keras_serializable(package="rankpipe")
class BatchL2(keras.layers.Layer):
    """Adds ``batch_l2`` of (ids, looked-up rows) to the model's losses and passes the rows through.
    1 / n_j is a non-trainable weight, so a saved model keeps the counts it was trained with."""

    def __init__(self, l2: float, cardinality: int, counts: Optional[np.ndarray] = None, **kwargs):
        super().__init__(**kwargs)
        self.l2 = float(l2)
        self.cardinality = int(cardinality)
        start = np.ones(self.cardinality, np.float32) if counts is None else (
            1.0 / np.maximum(np.asarray(counts, np.float32), 1.0))
        if start.shape != (self.cardinality,):
            raise ValueError(f"{self.name}: {start.shape[0]} id counts for a table of {self.cardinality} rows")
        self._start = start

    def build(self, input_shape):
        self.inverse_counts = self.add_weight(
            name="inverse_counts", shape=(self.cardinality,), trainable=False,
            initializer=keras.initializers.Constant(self._start))
        super().build(input_shape)

    def call(self, inputs, training=None):
        ids, rows = inputs
        self.add_loss(batch_l2(ids, rows, self.l2, self.inverse_counts))
        return rows

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        return dict(super().get_config(), l2=self.l2, cardinality=self.cardinality)
