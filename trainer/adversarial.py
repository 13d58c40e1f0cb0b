"""Training the transfer model: per-scene losses and the Wasserstein regulariser (Alibaba search team,
"Transfer learning in multi-task multi-scene search", technical blog, 2019, part 1; the critic as in
Shen et al., "Wasserstein Distance Guided Representation Learning for Domain Adaptation", AAAI 2018).

J = sum_d L_d + lambda * max_w (D_c - D_s - D_t) + L_reg, trained like a GAN:
each step the model minimises J with the current critic, then the critic
takes ``critic_steps`` steps maximising its distance estimates on that step's
(fixed) representations.

Choices the seed leaves open, made here:
- **Per-scene losses.** L_d is the cross-entropy averaged over scene d's
  examples in the batch; the task loss is the mean of L_d over the scenes
  present (``scene_loss: per_scene_mean``), so a 2 % scene weighs as much as
  the main one. ``scene_loss: pooled`` averages over examples instead.
- **More than two scenes.** The source is the main scene (``source_scene``,
  default the most frequent); every other scene t is a target. With T targets:
  D_c = mean_t W(shared | source, shared | t), D_s = W(shared, specific | source),
  D_t = mean_t W(shared, specific | t), and the model minimises
  lambda (D_c - D_s - D_t); with one target this is the seed's formula.
  Each-against-main (not all pairs) because the point is to move what the main
  scene learned into the small ones, and it needs T terms, not T(T+1)/2.
- **One estimate per distance.** The critic has one output per distance
  (2T + 1), each a Lipschitz function estimating its own W1 by
  E_P f - E_Q f. A single scalar critic maximising D_c - D_s - D_t would push
  D_s and D_t down while the model pushes them up, and the max of a sum is not
  the sum of the distances.
- **Bounded representations.** The critic sees each representation scaled to
  unit L2 norm. D_s and D_t are maximised by both players, so on raw
  activations the model could grow them without bound by scaling the
  specific tower; on the unit sphere every distance is at most 2.
- **Lipschitz bound.** ``lipschitz: gradient_penalty`` (WGAN-GP, Gulrajani et
  al. 2017: penalty (||grad f(x_hat)|| - 1)^2 on points between P and Q
  samples) or ``clip`` (WGAN, Arjovsky et al. 2017: weights clipped to
  [-clip_value, clip_value] after each critic step).
- **lambda = 0** is the ablation: the critic is still trained and its
  estimates logged (so the runs are comparable), but nothing reaches the model.
The served model is the plain transfer model; the critic is training-only.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

from trainer.balancing import MultiTaskModel
from trainer.layers import DNN, DomainTower

SCENE_LOSSES = ("per_scene_mean", "pooled")
LIPSCHITZ = ("gradient_penalty", "clip")


def representation_model(model: keras.Model) -> keras.Model:
    """The served model's heads plus what the regulariser needs: every DomainTower's shared and
    scene-specific outputs (concatenated over heads) and the scene one-hot."""
    towers = [layer for layer in model.layers if isinstance(layer, DomainTower)]
    if not towers:
        raise ValueError(f"model {model.name!r} has no DomainTower: the Wasserstein regulariser and per-scene "
                         "losses need the transfer model (trainer.model: transfer)")
    outputs = dict(model.output)
    outputs["shared_representation"] = keras.layers.Concatenate(name="shared_representation")(
        [t.output[1] for t in towers])
    outputs["specific_representation"] = keras.layers.Concatenate(name="specific_representation")(
        [t.output[2] for t in towers])
    outputs["domain"] = model.get_layer("domain").output
    return keras.Model(model.inputs, outputs, name=f"{model.name}_training")


def per_scene_mean(per_example: tf.Tensor, onehot: tf.Tensor) -> tf.Tensor:
    """Mean over the scenes present of each scene's mean of ``per_example`` (batch,)."""
    counts = tf.reduce_sum(onehot, axis=0)
    sums = tf.linalg.matvec(onehot, per_example, transpose_a=True)
    present = tf.cast(counts > 0, per_example.dtype)
    return tf.reduce_sum(present * sums / tf.maximum(counts, 1.0)) / tf.maximum(tf.reduce_sum(present), 1.0)


class DomainAdversarialModel(MultiTaskModel):
    """MultiTaskModel (any loss balancing) whose task losses are per-scene and which adds the
    Wasserstein term. Holds the critic and its optimizer; exports nothing of its own."""

    def __init__(self, model: keras.Model, loss_weights: Dict[str, float], scene_vocabulary: Sequence[str] = (),
                 source_scene: Optional[str] = None, scene_loss: str = "per_scene_mean",
                 adversarial_weight: float = 0.01, critic_steps: int = 5, lipschitz: str = "gradient_penalty",
                 gradient_penalty_weight: float = 10.0, clip_value: float = 0.01,
                 critic_hidden_units: Sequence[int] = (64,), critic_learning_rate: float = 1e-3, **kwargs):
        full = representation_model(model)
        super().__init__(full, loss_weights, **kwargs)
        if scene_loss not in SCENE_LOSSES:
            raise ValueError(f"multi_domain.scene_loss must be one of {SCENE_LOSSES}, got {scene_loss!r}")
        if lipschitz not in LIPSCHITZ:
            raise ValueError(f"multi_domain.lipschitz must be one of {LIPSCHITZ}, got {lipschitz!r}")
        if float(adversarial_weight) < 0 or int(critic_steps) < 1:
            raise ValueError("multi_domain.adversarial_weight must be >= 0 and critic_steps >= 1, got "
                             f"{adversarial_weight} and {critic_steps}")
        self.num_domains = int(full.output["domain"].shape[-1])
        if self.num_domains < 2:
            raise ValueError("the Wasserstein regulariser needs at least two scenes")
        self.source = source_index(scene_vocabulary, source_scene, self.num_domains)
        self.targets: List[int] = [d for d in range(self.num_domains) if d != self.source]
        # scene index -> position among the targets (the source maps to 0, masked out where used)
        self._target_position = tf.constant([self.targets.index(d) if d in self.targets else 0
                                             for d in range(self.num_domains)], tf.int32)
        self.scene_loss = scene_loss
        self.adversarial_weight = float(adversarial_weight)
        self.critic_steps = int(critic_steps)
        self.lipschitz = lipschitz
        self.gradient_penalty_weight = float(gradient_penalty_weight)
        self.clip_value = float(clip_value)
        n_targets = len(self.targets)
        self.critic = keras.Sequential([DNN(critic_hidden_units, name="critic_hidden"),
                                        keras.layers.Dense(2 * n_targets + 1, name="critic_out")], name="critic")
        # Built here, not on first use: under tf.distribute variables cannot be created inside a step.
        self.critic.build((None, int(full.output["shared_representation"].shape[-1])))
        self.critic_optimizer = keras.optimizers.Adam(float(critic_learning_rate), beta_1=0.5, beta_2=0.9)

    # ---- losses -------------------------------------------------------------------------------
    def _task_losses(self, y, out, sample_weight=None) -> List[tf.Tensor]:
        if self.scene_loss == "pooled":
            return super()._task_losses(y, out, sample_weight)
        onehot = out["domain"]
        return [per_scene_mean(self._per_example_loss(h, y, out, sample_weight), onehot) for h in self.heads]

    def _extra_loss(self, out) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        shared, specific, onehot = self._representations(out)
        d_c, d_s, d_t = self.distances(shared, specific, onehot)
        logs = {"d_c": d_c, "d_s": d_s, "d_t": d_t}
        if self.adversarial_weight == 0.0:
            return tf.constant(0.0), logs
        return self.adversarial_weight * (d_c - d_s - d_t), logs

    def _after_gradients(self, out) -> Dict[str, tf.Tensor]:
        shared, specific, onehot = [tf.stop_gradient(t) for t in self._representations(out)]
        penalty = tf.constant(0.0)
        for _ in range(self.critic_steps):
            penalty = self._critic_step(shared, specific, onehot)
        return {"critic_gradient_penalty": penalty}

    def _critic_step(self, shared: tf.Tensor, specific: tf.Tensor, onehot: tf.Tensor) -> tf.Tensor:
        """One ascent step on every distance estimate; returns the gradient penalty (0 if clipping)."""
        penalty = tf.constant(0.0)
        with tf.GradientTape() as tape:
            d_c, d_s, d_t = self.distances(shared, specific, onehot, reduce_targets=False)
            loss = -(tf.reduce_sum(d_c) + d_s + tf.reduce_sum(d_t))
            if self.lipschitz == "gradient_penalty":
                penalty = self.gradient_penalty(shared, specific, onehot)
                loss += self.gradient_penalty_weight * penalty
            loss = loss / tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, loss.dtype)
        variables = self.critic.trainable_variables
        self.critic_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        if self.lipschitz == "clip":
            for v in variables:
                v.assign(tf.clip_by_value(v, -self.clip_value, self.clip_value))
        return penalty

    def fit_critic(self, x, steps: int) -> Dict[str, float]:
        """Trains only the critic, ``steps`` steps on the model's current representations of x
        (the model does not move), and returns its estimates {d_c, d_s, d_t}: a converged
        critic's D_c is the Wasserstein distance the regulariser is shrinking."""
        out = self.model(x, training=False)
        shared, specific, onehot = self._representations(out)
        step = tf.function(self._critic_step)
        for _ in range(int(steps)):
            step(shared, specific, onehot)
        return {k: float(v) for k, v in zip(("d_c", "d_s", "d_t"), self.distances(shared, specific, onehot))}

    # ---- the critic's estimates ---------------------------------------------------------------
    def _representations(self, out):
        return (tf.math.l2_normalize(out["shared_representation"], axis=-1),
                tf.math.l2_normalize(out["specific_representation"], axis=-1), out["domain"])

    def distances(self, shared: tf.Tensor, specific: tf.Tensor, onehot: tf.Tensor, reduce_targets: bool = True):
        """(D_c, D_s, D_t): each E_P f_k - E_Q f_k with its own critic output k; a term whose
        P or Q has no example in the batch is 0. D_c and D_t are per target scene unless
        ``reduce_targets`` (then their mean over the targets)."""
        f_shared, f_specific = self.critic(shared), self.critic(specific)
        n = len(self.targets)
        src = onehot[:, self.source]
        tgt = tf.gather(onehot, self.targets, axis=1)                        # (batch, T)

        def masked_mean(values, mask):                                        # per column
            count = tf.reduce_sum(mask, axis=0)
            return tf.reduce_sum(values * mask, axis=0) / tf.maximum(count, 1.0), tf.cast(count > 0, values.dtype)

        src_c, has_src = masked_mean(f_shared[:, :n], src[:, None])
        tgt_c, has_tgt = masked_mean(f_shared[:, :n], tgt)
        d_c = (src_c - tgt_c) * has_src * has_tgt
        s_shared, _ = masked_mean(f_shared[:, n], src)
        s_specific, _ = masked_mean(f_specific[:, n], src)
        d_s = (s_shared - s_specific) * has_src[0]
        t_shared, _ = masked_mean(f_shared[:, n + 1:], tgt)
        t_specific, _ = masked_mean(f_specific[:, n + 1:], tgt)
        d_t = (t_shared - t_specific) * has_tgt
        if reduce_targets:
            return tf.reduce_mean(d_c), d_s, tf.reduce_mean(d_t)
        return d_c, d_s, d_t

    def gradient_penalty(self, shared: tf.Tensor, specific: tf.Tensor, onehot: tf.Tensor) -> tf.Tensor:
        """WGAN-GP on points between P and Q samples, each point scored by the one critic output
        whose distance it lies between: across scenes, a target example's shared output with a
        random source example's (D_c head of its scene); within a scene, an example's shared
        output with its own specific output (D_s head for the source, its D_t head otherwise)."""
        n = len(self.targets)
        scene = tf.argmax(onehot, axis=-1, output_type=tf.int32)
        is_source = tf.equal(scene, self.source)
        position = tf.gather(self._target_position, scene)
        batch = tf.shape(shared)[0]
        source_rows = tf.reshape(tf.where(is_source), [-1])
        n_source = tf.shape(source_rows)[0]
        partner = tf.gather(tf.concat([source_rows, tf.zeros([1], tf.int64)], 0),
                            tf.random.uniform([batch], 0, tf.maximum(n_source, 1), dtype=tf.int32))
        eps = tf.random.uniform([batch, 1])
        across = eps * shared + (1.0 - eps) * tf.gather(shared, partner)
        within = eps * shared + (1.0 - eps) * specific
        points = tf.concat([across, within], axis=0)
        head = tf.concat([position, tf.where(is_source, n, n + 1 + position)], axis=0)
        use = tf.concat([tf.cast(~is_source & (n_source > 0), tf.float32), tf.ones([batch])], axis=0)
        with tf.GradientTape() as tape:
            tape.watch(points)
            score = tf.reduce_sum(tf.gather(self.critic(points), head[:, None], batch_dims=1))
        grads = tape.gradient(score, points)
        norm = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=-1) + 1e-12)
        return tf.reduce_sum(use * tf.square(norm - 1.0)) / tf.maximum(tf.reduce_sum(use), 1.0)


def source_index(vocabulary: Sequence[str], source_scene: Optional[str], num_domains: int) -> int:
    if source_scene is None:
        return 0
    if source_scene not in vocabulary:
        raise ValueError(f"multi_domain.source_scene {source_scene!r} is not a scene of the training data "
                         f"({list(vocabulary)})")
    index = list(vocabulary).index(source_scene)
    if index >= num_domains:
        raise ValueError(f"source scene {source_scene!r} has index {index} >= {num_domains} scenes")
    return index
