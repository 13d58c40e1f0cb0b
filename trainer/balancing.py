"""Multi-task loss balancing: fixed weights, uncertainty weighting, GradNorm.

Why a wrapper model with its own ``train_step``: uncertainty weighting learns
extra variables that are not part of the served model, and GradNorm needs each
task's gradient separately, which Keras' compiled loss never exposes. The
wrapper trains the functional model it holds; the Trainer exports that inner
model, so nothing here is needed at serving time.

- ``fixed``: sum_i w_i L_i with the configured ``loss_weights``.
- ``uncertainty`` (Kendall, Gal & Cipolla, CVPR 2018): sum_i exp(-s_i) L_i + s_i / 2
  with learned s_i = log sigma_i^2 (the classification form, 1/sigma^2 L + log sigma).
  At the optimum exp(-s_i) = 1 / (2 L_i): noisier tasks get smaller weights.
- ``gradnorm`` (Chen et al., ICML 2018): weights w_i (summing to the number of
  tasks) move so that each task's gradient norm on the shared parameters,
  G_i = ||grad_W w_i L_i||, approaches mean(G) * r_i^alpha, where
  r_i = (L_i / L_i(0)) / mean_j(L_j / L_j(0)) is its relative inverse training
  rate. The gradient of sum_i |G_i - target_i| w.r.t. w_i (targets held
  constant) is sign(G_i - target_i) * ||grad_W L_i||, applied with plain SGD.
  "Shared parameters" are the dense variables every task loss reaches (the
  paper uses the last shared layer; here every such layer, since models differ
  in which layers they share); embeddings count only if nothing dense is shared.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import tensorflow as tf
import tf_keras as keras

from trainer import autograph_rules

autograph_rules.install()  # before the training loop is traced: see autograph_rules.py

METHODS = ("fixed", "uncertainty", "gradnorm")


def weighted_bce(y, p, sample_weight=None) -> tf.Tensor:
    """Per-example binary cross-entropy (batch,), times the sample weight if any."""
    per_example = keras.losses.binary_crossentropy(tf.reshape(y, [-1, 1]), tf.reshape(p, [-1, 1]))
    if sample_weight is not None:
        per_example = per_example * tf.reshape(tf.cast(sample_weight, per_example.dtype), [-1])
    return per_example


def mse(y, v, sample_weight=None) -> tf.Tensor:
    """Per-example squared error (batch,), times the sample weight if any: a regression head's loss."""
    per_example = tf.square(tf.reshape(tf.cast(y, tf.float32), [-1]) - tf.reshape(v, [-1]))
    if sample_weight is not None:
        per_example = per_example * tf.reshape(tf.cast(sample_weight, per_example.dtype), [-1])
    return per_example


def given_key(head: str) -> str:
    """The label key under which a conditional head's parent label travels with the batch."""
    return f"{head}/given"


def loss_labels(heads: Dict[str, Dict], loss_heads) -> Dict[str, str]:
    """{label key: example column} a dataset must yield to train ``loss_heads``: each head's label
    and, for a conditional head, its parent's label (the rows it is trained on)."""
    out = {h: heads[h]["label"] for h in loss_heads}
    out.update({given_key(h): heads[h]["given"] for h in loss_heads if heads[h].get("given")})
    return out


def _replica_mean(logs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Logs divided by the number of replicas: Keras sums step logs over replicas (``reduce_per_replica``,
    "auto"), so what it reports is the replicas' mean (metric results, already global, stay as they are)."""
    n = tf.distribute.get_strategy().num_replicas_in_sync
    return logs if n == 1 else {k: tf.cast(v, tf.float32) / n for k, v in logs.items()}


class MultiTaskModel(keras.Model):

    def __init__(self, model: keras.Model, loss_weights: Dict[str, float], method: str = "fixed",
                 gradnorm_alpha: float = 1.5, weight_learning_rate: float = 0.025,
                 heads: Optional[Dict[str, Dict]] = None, **kwargs):
        """``heads``: the funnel's head config (``schemas/tasks.py``); a regression head's loss is
        the squared error, and a conditional head's (one with ``given``) counts only the rows where
        its parent happened, averaged over the whole batch: the chain's log-likelihood factor.
        None: every head is binary and trained on every row."""
        super().__init__(**kwargs)
        if method not in METHODS:
            raise ValueError(f"loss_balancing.method must be one of {METHODS}, got {method!r}")
        missing = set(loss_weights) - set(model.output_names)
        if missing:
            raise ValueError(f"loss_weights name heads {sorted(missing)} the model does not output "
                             f"({sorted(model.output_names)})")
        self.model = model
        self.heads: List[str] = list(loss_weights)
        config = heads or {}
        self.regression = {h for h in self.heads if config.get(h, {}).get("type") == "regression"}
        self.conditional = {h for h in self.heads if config.get(h, {}).get("given")}
        self.method = method
        self.gradnorm_alpha = float(gradnorm_alpha)
        self.weight_learning_rate = float(weight_learning_rate)
        n = len(self.heads)
        initial = tf.constant([float(loss_weights[h]) for h in self.heads])
        if method == "gradnorm":
            initial = initial * n / tf.reduce_sum(initial)
        # Assigned inside train_step, i.e. per replica under tf.distribute: replica 0's value is kept.
        first = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.task_weights = tf.Variable(initial, trainable=False, name="task_weights", aggregation=first)
        self.log_vars: Optional[tf.Variable] = None
        if method == "uncertainty":
            self.log_vars = tf.Variable(tf.zeros([n]), trainable=True, name="log_vars")
        self.initial_losses = tf.Variable(tf.zeros([n]), trainable=False, name="initial_losses", aggregation=first)
        self._has_initial = tf.Variable(False, trainable=False, name="has_initial_losses", aggregation=first)

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def _per_example_loss(self, head: str, y, out, sample_weight=None) -> tf.Tensor:
        """(batch,): cross-entropy (squared error for a regression head), times the sample weight and,
        for a conditional head, its parent's label."""
        if head in self.conditional:
            given = tf.cast(y[given_key(head)], tf.float32)
            sample_weight = given if sample_weight is None else given * tf.cast(sample_weight, tf.float32)
        loss = mse if head in self.regression else weighted_bce
        return loss(y[head], out[head], sample_weight)

    def _task_losses(self, y, out, sample_weight=None) -> List[tf.Tensor]:
        """Per head, the replica's mean loss (sample weights scale, as in Keras' SUM_OVER_BATCH_SIZE)."""
        return [tf.reduce_mean(self._per_example_loss(h, y, out, sample_weight)) for h in self.heads]

    def _combine(self, losses: tf.Tensor) -> tf.Tensor:
        if self.method == "uncertainty":
            return tf.reduce_sum(tf.exp(-self.log_vars) * losses + 0.5 * self.log_vars)
        return tf.reduce_sum(self.task_weights * losses)

    def effective_weights(self) -> tf.Tensor:
        return tf.exp(-self.log_vars) if self.method == "uncertainty" else tf.identity(self.task_weights)

    def _logs(self, total, losses, y, out) -> Dict[str, tf.Tensor]:
        # A conditional head's metrics count the rows where its parent happened, as its loss does.
        metric_weights = {h: tf.reshape(tf.cast(y[given_key(h)], tf.float32), [-1, 1]) if h in self.conditional
                          else tf.ones_like(tf.reshape(tf.cast(y[h], tf.float32), [-1, 1])) for h in self.heads}
        self.compiled_metrics.update_state({h: y[h] for h in self.heads}, {h: out[h] for h in self.heads},
                                           metric_weights if self.conditional else None)
        logs = {m.name: m.result() for m in self.metrics}
        logs["loss"] = total
        weights = self.effective_weights()
        for i, h in enumerate(self.heads):
            logs[f"{h}_loss"] = losses[i]
            logs[f"{h}_weight"] = weights[i]
        return logs

    def train_step(self, data):
        x, y = data[0], data[1]
        sw = data[2] if len(data) > 2 else None
        model_vars = self.model.trainable_variables
        with tf.GradientTape(persistent=self.method == "gradnorm") as tape:
            out = self.model(x, training=True)
            task_losses = self._task_losses(y, out, sw)  # per task, recorded on the tape for GradNorm
            losses = tf.stack(task_losses)
            reg = tf.add_n(self.model.losses) if self.model.losses else tf.constant(0.0)
            extra_loss, extra_logs = self._extra_loss(out)
            total = self._combine(losses) + reg + extra_loss
            # Replicas' gradients are summed: each replica's mean loss counts 1/N (Keras' built-in scaling).
            scaled = total / tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, total.dtype)
        extra = [self.log_vars] if self.log_vars is not None else []
        grads = tape.gradient(scaled, model_vars + extra)
        if self.method == "gradnorm":
            self._gradnorm_update(tape, task_losses, model_vars)
            del tape
        extra_logs.update(self._after_gradients(out))
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, model_vars + extra) if g is not None])
        return _replica_mean(dict(self._logs(total, losses, y, out), **extra_logs))

    def _extra_loss(self, out) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """A further training-only loss term and its logs (the domain-adversarial subclass's hook)."""
        return tf.constant(0.0), {}

    def _after_gradients(self, out) -> Dict[str, tf.Tensor]:
        """Runs after the model's gradients are taken, before they are applied (critic steps)."""
        return {}

    def test_step(self, data):
        x, y = data[0], data[1]
        sw = data[2] if len(data) > 2 else None
        out = self.model(x, training=False)
        losses = tf.stack(self._task_losses(y, out, sw))
        reg = tf.add_n(self.model.losses) if self.model.losses else tf.constant(0.0)
        extra_loss, extra_logs = self._extra_loss(out)
        return _replica_mean(dict(self._logs(self._combine(losses) + reg + extra_loss, losses, y, out), **extra_logs))

    def _shared_variables(self, per_task: List[List[Optional[tf.Tensor]]], variables) -> List[int]:
        """Indices of variables every task's loss reaches (decided at trace time: None is static)."""
        reached = [i for i in range(len(variables)) if all(g[i] is not None for g in per_task)]
        dense = [i for i in reached if not isinstance(per_task[0][i], tf.IndexedSlices)]
        if not reached:
            raise ValueError("gradnorm: no parameter is shared by all task losses")
        return dense or reached

    def _gradnorm_update(self, tape, task_losses: List[tf.Tensor], variables) -> None:
        per_task = [tape.gradient(loss, variables) for loss in task_losses]
        losses = tf.stack(task_losses)
        shared = self._shared_variables(per_task, variables)
        norms = tf.stack([tf.linalg.global_norm([tf.convert_to_tensor(g[i]) for i in shared]) for g in per_task])
        self.initial_losses.assign(tf.where(self._has_initial, self.initial_losses, losses))
        self._has_initial.assign(True)
        w = self.task_weights
        g_norm = w * norms
        ratio = losses / tf.maximum(self.initial_losses, 1e-12)
        rate = ratio / tf.reduce_mean(ratio)
        target = tf.stop_gradient(tf.reduce_mean(g_norm) * tf.pow(rate, self.gradnorm_alpha))
        grad_w = tf.sign(g_norm - target) * norms
        new = tf.maximum(w - self.weight_learning_rate * grad_w, 1e-3)
        self.task_weights.assign(new * len(self.heads) / tf.reduce_sum(new))
