"""Mixture-of-experts building blocks: experts, gates, their mix, and PLE's CGC level.

Separate layers rather than one fused MoE so that the gates are model outputs
one can inspect (per-scene gate reports, the "gates sum to 1" test) and so
MMoE, OMoE and PLE share the same pieces.
"""
from __future__ import annotations

from typing import List, Sequence

import tensorflow as tf
import tf_keras as keras

from trainer import initializers
from trainer.layers.dnn import DNN


@keras.utils.register_keras_serializable(package="rankpipe")
class Experts(keras.layers.Layer):
    """``num_experts`` independent DNNs on the same input; output (batch, num_experts, width).

    Held as stacked weights rather than one ``DNN`` per expert: the first layer of every expert is
    one matmul of the input against the experts' kernels side by side, (in, n * units), and each
    further layer one batched matmul over the experts. On CPU at batch 1024 that is fewer, larger
    kernels than n separate Dense stacks (``benchmarks/train_throughput.py`` measures it). Each
    expert's kernels are initialised as its own Dense layer's would be (fan-in and fan-out of one
    expert, not of the stack).
    """

    def __init__(self, num_experts: int, expert_dnn_hidden_units: Sequence[int] = (64,), dropout: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        if int(num_experts) < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        if not expert_dnn_hidden_units:
            raise ValueError("expert_dnn_hidden_units must name at least one layer")
        self.num_experts = int(num_experts)
        self.expert_dnn_hidden_units = [int(u) for u in expert_dnn_hidden_units]
        self.dropout = float(dropout)
        self._dropout = [keras.layers.Dropout(self.dropout) for _ in self.expert_dnn_hidden_units] \
            if self.dropout else []

    def build(self, input_shape):
        n, units = self.num_experts, self.expert_dnn_hidden_units
        fan_in = int(input_shape[-1])
        self.kernels, self.biases = [], []
        for i, u in enumerate(units):
            previous = fan_in if i == 0 else units[i - 1]
            inits = [initializers.dense() for _ in range(n)]  # a fresh instance per expert: distinct draws
            if i == 0:
                shape = (previous, n * u)
                init = (lambda shape, dtype=None, inits=inits, p=previous, u=u:
                        tf.concat([f((p, u), dtype) for f in inits], axis=1))
            else:
                shape = (n, previous, u)
                init = (lambda shape, dtype=None, inits=inits, p=previous, u=u:
                        tf.stack([f((p, u), dtype) for f in inits]))
            self.kernels.append(self.add_weight(f"kernel_{i}", shape, initializer=init))
            self.biases.append(self.add_weight(f"bias_{i}", (n, u), initializer="zeros"))
        super().build(input_shape)

    def call(self, inputs, training=None):
        n, units = self.num_experts, self.expert_dnn_hidden_units
        if n == 1:  # PLE's usual one expert per task: no transposes
            x = inputs
            for i in range(len(units)):
                x = tf.nn.relu(tf.matmul(x, self.kernels[i] if i == 0 else self.kernels[i][0]) + self.biases[i][0])
                if self._dropout:
                    x = self._dropout[i](x, training=training)
            return x[:, None, :]
        x = tf.matmul(inputs, self.kernels[0])                          # (batch, n * units[0])
        x = tf.transpose(tf.reshape(x, [-1, n, units[0]]), [1, 0, 2])  # (n, batch, units[0])
        for i in range(len(units)):
            if i:
                x = tf.matmul(x, self.kernels[i])                       # batched over experts
            x = tf.nn.relu(x + self.biases[i][:, None, :])
            if self._dropout:
                x = self._dropout[i](x, training=training)
        return tf.transpose(x, [1, 0, 2])                               # (batch, n, width)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_experts, self.expert_dnn_hidden_units[-1])

    def get_config(self):
        return dict(super().get_config(), num_experts=self.num_experts,
                    expert_dnn_hidden_units=self.expert_dnn_hidden_units, dropout=self.dropout)


@keras.utils.register_keras_serializable(package="rankpipe")
class Gate(keras.layers.Layer):
    """softmax(W x) over experts (optionally after a small DNN): rows sum to 1."""

    def __init__(self, num_experts: int, gate_dnn_hidden_units: Sequence[int] = (), **kwargs):
        super().__init__(**kwargs)
        self.num_experts = int(num_experts)
        self.gate_dnn_hidden_units = [int(u) for u in gate_dnn_hidden_units]
        self._dnn = DNN(self.gate_dnn_hidden_units, name="gate_dnn") if self.gate_dnn_hidden_units else None
        self._logits = keras.layers.Dense(self.num_experts, kernel_initializer=initializers.dense(),
                                          name="gate_logits")

    def call(self, inputs, training=None):
        x = self._dnn(inputs, training=training) if self._dnn is not None else inputs
        return tf.nn.softmax(self._logits(x), axis=-1)

    def get_config(self):
        return dict(super().get_config(), num_experts=self.num_experts,
                    gate_dnn_hidden_units=self.gate_dnn_hidden_units)


@keras.utils.register_keras_serializable(package="rankpipe")
class ExpertMix(keras.layers.Layer):
    """[experts (batch, n, d), gate (batch, n)] -> sum_i gate_i * expert_i, (batch, d)."""

    def call(self, inputs):
        experts, gate = inputs
        # a broadcast product and a sum: MKL's einsum kernel for this contraction cost ~4x as much on CPU
        return tf.reduce_sum(experts * gate[:, :, None], axis=1)


@keras.utils.register_keras_serializable(package="rankpipe")
class CGC(keras.layers.Layer):
    """One Customized Gate Control level of PLE (Tang et al., RecSys 2020).

    Inputs: one representation per task plus a shared one (the same tensor on
    the first level). Each task's gate mixes its own experts and the shared
    experts; unless this is the last level, a shared gate mixes all experts
    into the next level's shared input. ``return_gates=True`` also returns the
    gate weights (task gates first, then the shared gate).
    """

    def __init__(self, num_tasks: int, specific_expert_num: int = 1, shared_expert_num: int = 1,
                 expert_dnn_hidden_units: Sequence[int] = (64,), gate_dnn_hidden_units: Sequence[int] = (),
                 is_last: bool = False, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = int(num_tasks)
        self.specific_expert_num = int(specific_expert_num)
        self.shared_expert_num = int(shared_expert_num)
        self.expert_dnn_hidden_units = [int(u) for u in expert_dnn_hidden_units]
        self.gate_dnn_hidden_units = [int(u) for u in gate_dnn_hidden_units]
        self.is_last = bool(is_last)
        self.dropout = float(dropout)
        self._task_experts = [Experts(self.specific_expert_num, self.expert_dnn_hidden_units, self.dropout,
                                      name=f"task_{t}_experts") for t in range(self.num_tasks)]
        self._shared_experts = Experts(self.shared_expert_num, self.expert_dnn_hidden_units, self.dropout,
                                       name="shared_experts")
        per_task = self.specific_expert_num + self.shared_expert_num
        self._task_gates = [Gate(per_task, self.gate_dnn_hidden_units, name=f"task_{t}_gate")
                            for t in range(self.num_tasks)]
        self._shared_gate = None if self.is_last else Gate(
            self.num_tasks * self.specific_expert_num + self.shared_expert_num, self.gate_dnn_hidden_units,
            name="shared_gate")
        self._mix = ExpertMix()

    def call(self, inputs: List[tf.Tensor], training=None, return_gates: bool = False):
        if len(inputs) != self.num_tasks + 1:
            raise ValueError(f"CGC expects {self.num_tasks} task inputs + 1 shared input, got {len(inputs)}")
        shared = self._shared_experts(inputs[-1], training=training)
        specific = [e(x, training=training) for e, x in zip(self._task_experts, inputs[:-1])]
        outputs, gates = [], []
        for t in range(self.num_tasks):
            gate = self._task_gates[t](inputs[t], training=training)
            outputs.append(self._mix([tf.concat([specific[t], shared], axis=1), gate]))
            gates.append(gate)
        if self._shared_gate is not None:
            gate = self._shared_gate(inputs[-1], training=training)
            outputs.append(self._mix([tf.concat(specific + [shared], axis=1), gate]))
            gates.append(gate)
        return (outputs, gates) if return_gates else outputs

    def get_config(self):
        return dict(super().get_config(), num_tasks=self.num_tasks, specific_expert_num=self.specific_expert_num,
                    shared_expert_num=self.shared_expert_num, expert_dnn_hidden_units=self.expert_dnn_hidden_units,
                    gate_dnn_hidden_units=self.gate_dnn_hidden_units, is_last=self.is_last, dropout=self.dropout)
