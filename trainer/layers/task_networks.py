"""One network per task on a shared input: the soft-parameter-sharing baselines.

The MMoE paper (Ma et al., KDD 2018) compares its gates against three ways of giving each task
its own network while still letting the tasks share something:
- independent networks (the single-task baseline, here on a shared input);
- an L2 constraint (Duong et al., ACL 2015): λ Σ_layers Σ_{i<j} ‖W_i − W_j‖² between the
  corresponding kernels of every pair of task networks, so they share by staying close;
- cross-stitch units (Misra et al., CVPR 2016): after every layer, task i's activations become
  Σ_j α[i, j]·h_j, with α a learned T×T matrix per layer (initialised near the identity), so the
  networks learn how much to read from each other.

All three are one layer with stacked weights, (T, in, out) per layer, as ``Experts`` holds its
experts: a batched matmul per layer instead of T Dense stacks, and the L2 distance and the
stitching are plain tensor operations on the stack.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tf_keras as keras

from trainer import initializers


@keras.utils.register_keras_serializable(package="rankpipe")
class TaskNetworks(keras.layers.Layer):
    """(batch, in) -> [task 1's (batch, width), ..., task T's]; ``stacked``: (batch, T, width), the
    tasks in order as a sequence (GMSL's GRU reads it)."""

    def __init__(self, num_tasks: int, hidden_units: Sequence[int] = (128,), dropout: float = 0.0,
                 cross_stitch: bool = False, stitch_init: float = 0.9, l2_distance: float = 0.0,
                 stacked: bool = False, **kwargs):
        super().__init__(**kwargs)
        if int(num_tasks) < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        if not hidden_units:
            raise ValueError("the task networks need at least one layer (hidden units)")
        if not 0.0 < float(stitch_init) <= 1.0:
            raise ValueError(f"stitch_init (the weight of a task's own activations) must be in (0, 1], "
                             f"got {stitch_init}")
        if float(l2_distance) < 0:
            raise ValueError(f"l2_distance must be >= 0, got {l2_distance}")
        self.num_tasks = int(num_tasks)
        self.hidden_units = [int(u) for u in hidden_units]
        self.dropout = float(dropout)
        self.cross_stitch = bool(cross_stitch)
        self.stitch_init = float(stitch_init)
        self.l2_distance = float(l2_distance)
        self.stacked = bool(stacked)
        self._dropout = [keras.layers.Dropout(self.dropout) for _ in self.hidden_units] if self.dropout else []

    def build(self, input_shape):
        t = self.num_tasks
        self.kernels, self.biases, self.stitches = [], [], []
        for i, units in enumerate(self.hidden_units):
            fan_in = int(input_shape[-1]) if i == 0 else self.hidden_units[i - 1]
            inits = [initializers.dense() for _ in range(t)]  # one Dense layer's scale and draw per task
            init = (lambda shape, dtype=None, inits=inits, p=fan_in, u=units:
                    tf.stack([f((p, u), dtype) for f in inits]))
            self.kernels.append(self.add_weight(f"kernel_{i}", (t, fan_in, units), initializer=init))
            self.biases.append(self.add_weight(f"bias_{i}", (t, units), initializer="zeros"))
            if self.cross_stitch:
                off = (1.0 - self.stitch_init) / (t - 1) if t > 1 else 0.0
                value = off * tf.ones((t, t)) + (self.stitch_init - off) * tf.eye(t)
                self.stitches.append(self.add_weight(f"stitch_{i}", (t, t),
                                                     initializer=keras.initializers.Constant(value.numpy())))
        super().build(input_shape)

    def call(self, inputs, training=None):
        x = tf.einsum("bi,tio->tbo", inputs, self.kernels[0])
        for i in range(len(self.hidden_units)):
            if i:
                x = tf.matmul(x, self.kernels[i])                  # (T, batch, units), batched over tasks
            x = tf.nn.relu(x + self.biases[i][:, None, :])
            if self._dropout:
                x = self._dropout[i](x, training=training)
            if self.cross_stitch:
                x = tf.einsum("ts,sbo->tbo", self.stitches[i], x)  # task t reads Σ_s α[t, s]·h_s
        if self.l2_distance and self.num_tasks > 1:
            self.add_loss(self.l2_distance * self.distance())
        if self.stacked:
            return tf.transpose(x, [1, 0, 2])
        return tf.unstack(x, num=self.num_tasks, axis=0)

    def distance(self):
        """Σ_layers Σ_{i<j} ‖W_i − W_j‖², through T·Σ‖W_i‖² − ‖Σ W_i‖² (no T² differences)."""
        total = 0.0
        for k in self.kernels:
            total += self.num_tasks * tf.reduce_sum(tf.square(k)) - tf.reduce_sum(tf.square(tf.reduce_sum(k, 0)))
        return total

    def compute_output_shape(self, input_shape):
        if self.stacked:
            return tuple(input_shape[:-1]) + (self.num_tasks, self.hidden_units[-1])
        return [tuple(input_shape[:-1]) + (self.hidden_units[-1],)] * self.num_tasks

    def get_config(self):
        return dict(super().get_config(), num_tasks=self.num_tasks, hidden_units=self.hidden_units,
                    dropout=self.dropout, cross_stitch=self.cross_stitch, stitch_init=self.stitch_init,
                    l2_distance=self.l2_distance, stacked=self.stacked)


@keras.utils.register_keras_serializable(package="rankpipe")
class SequenceStep(keras.layers.Layer):
    """(batch, T, d) -> step ``index``'s (batch, d): one task's node of a sequence over the tasks."""

    def __init__(self, index: int, **kwargs):
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, inputs):
        return inputs[:, self.index]

    def get_config(self):
        return dict(super().get_config(), index=self.index)
