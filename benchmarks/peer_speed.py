"""Training examples/s of the zoo against DeepCTR 0.9.4 on in-memory tensors, and the cost of the
project's own ``train_step`` against a plain compiled ``fit``: the configuration of
``../shared/PERFORMANCE.md`` (200k rows, 8 sparse features with 4 to 50k ids and 16-wide
embeddings, 2 dense, batch 1024, Adam, one warm-up epoch then timed epochs).

Three fits per model and round, alternating, so that a noisy machine slows all three alike:
- project: ``build_model`` + ``MultiTaskModel`` (the Trainer's path, fixed loss weights);
- plain: the same functional model under Keras' own compiled loss with the same weights;
- DeepCTR: its namesake model, ``compile``/``fit``.
The losses are the funnel's: ctr against click and ctcvr against click and conversion.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Dict, List

import numpy as np

from benchmarks.peer_models import build_deepctr, build_project, deepctr_features

CARDINALITIES = (4, 10, 50, 100, 1_000, 5_000, 20_000, 50_000)
EMBEDDING_DIM = 16
HEADS = ("ctr", "ctcvr")


@dataclasses.dataclass
class Data:
    x: Dict[str, np.ndarray]  # (n, 1) each
    y: Dict[str, np.ndarray]  # ctr, ctcvr: (n,) float32
    sparse: Dict[str, int]
    dense: List[str]


def synthetic(rows: int = 200_000, seed: int = 0) -> Data:
    """Zipf-like ids (real id features are skewed: the gather touches few distinct rows), labels from a
    logistic of a few features so the losses move as on real data."""
    rng = np.random.default_rng(seed)
    x, sparse = {}, {}
    logit = np.full(rows, -2.0)
    for i, size in enumerate(CARDINALITIES):
        name = f"sparse_{i}"
        ids = np.minimum((rng.pareto(1.2, rows) * size / 20).astype(np.int64), size - 1)
        x[name], sparse[name] = ids.reshape(-1, 1), size
        logit += rng.normal(0, 0.3, size)[ids]
    dense = ["num_0", "num_1"]  # not dense_N: DeepCTR auto-names its Dense layers so
    for name in dense:
        v = rng.normal(0, 1, rows).astype(np.float32)
        x[name] = v.reshape(-1, 1)
        logit += 0.3 * v
    click = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    conversion = click * (rng.random(rows) < 0.1).astype(np.float32)
    return Data(x, {"ctr": click, "ctcvr": conversion}, sparse, dense)


class _EpochClock:
    def __init__(self):
        import tf_keras as keras
        clock = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 1:
                    clock.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                clock.end = time.perf_counter()
        self.callback = Callback()
        self.start = self.end = 0.0


def _rate(model, x, y, data: Data, epochs: int, batch: int) -> float:
    clock = _EpochClock()
    model.fit(x, y, batch_size=batch, epochs=1 + epochs, shuffle=True, verbose=0, callbacks=[clock.callback])
    return epochs * len(data.y["ctr"]) / (clock.end - clock.start)


def fit_rate(side: str, name: str, data: Data, epochs: int = 2, batch: int = 1024, lr: float = 0.001,
             model_params: Dict = None, optimizer: str = "lazy_adam") -> float:
    """Examples/s of ``epochs`` timed epochs after one warm-up epoch, for side project | plain | deepctr."""
    import tensorflow as tf
    import tf_keras as keras

    keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    if side == "deepctr":
        model = build_deepctr(name, deepctr_features(data.sparse, data.dense, EMBEDDING_DIM), HEADS, 0)
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=["binary_crossentropy"] * 2)
        return _rate(model, {k: v.ravel() for k, v in data.x.items()}, [data.y[h] for h in HEADS], data, epochs,
                     batch)
    from trainer import optimizers
    from trainer.balancing import MultiTaskModel
    model = build_project(name, data.sparse, data.dense, EMBEDDING_DIM, model_params)
    if side == "plain":
        model.compile(optimizer=optimizers.make(optimizer, lr), loss={h: "binary_crossentropy" for h in HEADS})
        return _rate(model, data.x, dict(data.y), data, epochs, batch)
    trainable = MultiTaskModel(model, {h: 1.0 for h in HEADS})
    trainable.compile(optimizer=optimizers.make(optimizer, lr))
    return _rate(trainable, data.x, dict(data.y), data, epochs, batch)
