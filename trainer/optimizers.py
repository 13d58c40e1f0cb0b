"""The Trainer's optimizer: Adam, with lazy (row-wise) updates of embedding tables by default.

Keras' Adam, given the sparse gradient of an embedding lookup, still decays the first and second
moments of *every* row of the table and moves every row, each step: work proportional to the
vocabulary, not to the batch. With id features of millions of values that is most of a step
(on the 50k-id benchmark of ``benchmarks/train_throughput.py`` already a fifth of it). Lazy Adam
updates only the rows the batch looked up, as TensorFlow Addons' ``LazyAdam`` and the sparse
optimizers of ranking systems (EasyRec, TorchRec's row-wise Adagrad/Adam) do: a row's moments decay
only when it is seen, which for rare ids means larger steps when they do appear. Dense variables
get exactly Keras' Adam update.

    trainer:
      optimizer: lazy_adam    # or adam (Keras' own: every row, every step)
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

NAMES = ("lazy_adam", "adam")


@keras.utils.register_keras_serializable(package="rankpipe")
class LazyAdam(keras.optimizers.Adam):

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices) or self.amsgrad:
            return super().update_step(gradient, variable)
        # Keras' apply_gradients has already summed duplicate indices (_deduplicate_sparse_grad).
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = (tf.cast(self.learning_rate, dtype) * tf.sqrt(1 - tf.pow(beta_2, step))
                 / (1 - tf.pow(beta_1, step)))
        key = self._var_key(variable)
        epsilon = tf.cast(self.epsilon, dtype)
        if getattr(self, "adaptive_epsilon", False):
            epsilon = epsilon * tf.sqrt(1 - tf.pow(beta_2, step))
        m = self._momentums[self._index_dict[key]]
        v = self._velocities[self._index_dict[key]]
        rows, values = gradient.indices, gradient.values
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * values
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(values)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + epsilon), rows))


def make(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name not in NAMES:
        raise ValueError(f"trainer.optimizer must be one of {NAMES}, got {name!r}")
    return (LazyAdam if name == "lazy_adam" else keras.optimizers.Adam)(float(learning_rate))
