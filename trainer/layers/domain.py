"""Multi-domain (multi-scene) building blocks: scene-specific parameters selected per example.

Every scene-specific variable is named ``per_domain_*`` and laid out
domain-major (its first dimension is ``num_domains`` or a multiple of it), so
"a scene's parameters get gradients only from its own examples" is a property
one can check variable by variable. Scene-specific networks are evaluated for
every scene and the example's own is selected with a one-hot mask: with a
handful of scenes this costs a few small matmuls, and the mask zeroes every
other scene's gradient exactly, where a gather of per-example weight matrices
would cost batch x in x out memory.
"""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from trainer import initializers
from trainer.layers import penalty
from trainer.layers.dnn import DNN


def domain_of(onehot: tf.Tensor) -> tf.Tensor:
    return tf.argmax(onehot, axis=-1, output_type=tf.int64)


def select_domain(per_domain: tf.Tensor, onehot: tf.Tensor) -> tf.Tensor:
    """(batch, D, width) -> (batch, width): each example's own scene's row."""
    return tf.einsum("bdw,bd->bw", per_domain, onehot)


@keras.utils.register_keras_serializable(package="rankpipe")
class DomainIndex(keras.layers.Layer):
    """Scene index -> one-hot over the ``num_domains`` known scenes.

    An index outside the vocabulary (the Transform's OOV bucket: a scene that
    did not exist on the training days) is served as ``fallback`` (domain 0,
    the most frequent scene, since Transform vocabularies are frequency
    ordered) instead of by scene-specific parameters nobody trained."""

    def __init__(self, num_domains: int, fallback: int = 0, one_hot: bool = True, **kwargs):
        super().__init__(**kwargs)
        if int(num_domains) < 1:
            raise ValueError(f"num_domains must be >= 1, got {num_domains}")
        if not 0 <= int(fallback) < int(num_domains):
            raise ValueError(f"fallback domain {fallback} is not in [0, {num_domains})")
        self.num_domains = int(num_domains)
        self.fallback = int(fallback)
        self.one_hot = bool(one_hot)

    def call(self, inputs):
        idx = tf.reshape(tf.cast(inputs, tf.int64), [-1])
        known = (idx >= 0) & (idx < self.num_domains)
        idx = tf.where(known, idx, tf.constant(self.fallback, tf.int64))
        if not self.one_hot:  # the cleaned index, (batch, 1), for the scene feature's own embedding
            return idx[:, None]
        return tf.one_hot(idx, self.num_domains, dtype=self.compute_dtype)

    def get_config(self):
        return dict(super().get_config(), num_domains=self.num_domains, fallback=self.fallback, one_hot=self.one_hot)


@keras.utils.register_keras_serializable(package="rankpipe")
class PerDomainDense(keras.layers.Layer):
    """A Dense layer with one kernel per scene: (batch, in) or (batch, D, in) -> (batch, D, units).

    ``star=True`` is STAR's star topology (Sheng et al., CIKM 2021): scene d's
    kernel is W_shared * W_d (elementwise) and its bias b_shared + b_d; W_d
    starts at ones so every scene starts from the shared network."""

    def __init__(self, units: int, num_domains: int, activation=None, star: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.num_domains = int(num_domains)
        self.activation = keras.activations.get(activation)
        self.star = bool(star)

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        shape = (self.num_domains, fan_in, self.units)
        self.per_domain_kernel = self.add_weight(
            "per_domain_kernel", shape,
            initializer="ones" if self.star else _per_domain_glorot(fan_in, self.units))
        self.per_domain_bias = self.add_weight("per_domain_bias", (self.num_domains, self.units),
                                               initializer="zeros")
        if self.star:
            self.shared_kernel = self.add_weight("shared_kernel", (fan_in, self.units), initializer="glorot_uniform")
            self.shared_bias = self.add_weight("shared_bias", (self.units,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        kernel = self.per_domain_kernel * self.shared_kernel[None] if self.star else self.per_domain_kernel
        bias = self.per_domain_bias + self.shared_bias[None] if self.star else self.per_domain_bias
        pattern = "bi,dio->bdo" if inputs.shape.rank == 2 else "bdi,dio->bdo"
        return self.activation(tf.einsum(pattern, inputs, kernel) + bias[None])

    def get_config(self):
        return dict(super().get_config(), units=self.units, num_domains=self.num_domains,
                    activation=keras.activations.serialize(self.activation), star=self.star)


def _per_domain_glorot(fan_in: int, fan_out: int):
    limit = (6.0 / (fan_in + fan_out)) ** 0.5
    return keras.initializers.RandomUniform(-limit, limit)


@keras.utils.register_keras_serializable(package="rankpipe")
class DomainDNN(keras.layers.Layer):
    """A stack of ``PerDomainDense``; inputs [x, scene one-hot], output the example's own scene's
    last layer, (batch, hidden_units[-1]). ``output_activation`` overrides the last layer's."""

    def __init__(self, hidden_units: Sequence[int], num_domains: int, activation: str = "relu",
                 output_activation: str = "same", star: bool = False, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = [int(u) for u in hidden_units]
        if not self.hidden_units:
            raise ValueError("DomainDNN needs at least one layer")
        self.num_domains = int(num_domains)
        self.activation = activation
        self.output_activation = output_activation
        self.star = bool(star)
        self.dropout = float(dropout)
        last = len(self.hidden_units) - 1
        self._layers = [PerDomainDense(u, self.num_domains,
                                       activation if i < last or output_activation == "same" else output_activation,
                                       star=self.star, name=f"dense_{i}")
                        for i, u in enumerate(self.hidden_units)]
        self._dropout = [keras.layers.Dropout(self.dropout) for _ in self._layers[:-1]] if self.dropout else []

    def call(self, inputs, training=None):
        x, onehot = inputs
        for i, layer in enumerate(self._layers):
            x = layer(x)
            if self._dropout and i < len(self._dropout):
                x = self._dropout[i](x, training=training)
        return select_domain(x, onehot)

    def get_config(self):
        return dict(super().get_config(), hidden_units=self.hidden_units, num_domains=self.num_domains,
                    activation=self.activation, output_activation=self.output_activation, star=self.star,
                    dropout=self.dropout)


@keras.utils.register_keras_serializable(package="rankpipe")
class DomainEmbedding(keras.layers.Layer):
    """e^j = concat(e_c^j, e_d^j): a shared embedding plus a small embedding of the example's own scene.

    The scene-specific table holds ``num_domains * cardinality`` rows, scene-major, so a
    lookup is one gather and its gradient stays sparse (rows of one scene only)."""

    def __init__(self, cardinality: int, shared_dim: int, domain_dim: int, num_domains: int,
                 l2: float = 0.0, l2_scope: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.cardinality = int(cardinality)
        self.shared_dim = int(shared_dim)
        self.domain_dim = int(domain_dim)
        self.num_domains = int(num_domains)
        self.l2 = float(l2)
        self.l2_scope = penalty.check(l2_scope or penalty.current())
        with penalty.using(self.l2_scope):
            reg = penalty.table_regularizer(self.l2)
        self._shared = keras.layers.Embedding(self.cardinality, self.shared_dim, embeddings_regularizer=reg,
                                              embeddings_initializer=initializers.embedding(), name="shared")
        self._specific = (keras.layers.Embedding(self.num_domains * self.cardinality, self.domain_dim,
                                                 embeddings_regularizer=reg,
                                                 embeddings_initializer=initializers.embedding(),
                                                 name="per_domain_embedding")
                          if self.domain_dim else None)

    def call(self, inputs):
        ids, onehot = inputs
        ids = tf.reshape(tf.cast(ids, tf.int64), [-1])
        shared = self._shared(ids)
        batch_penalty = self.l2 and self.l2_scope == "batch"
        if batch_penalty:
            self.add_loss(penalty.batch_l2(ids, shared, self.l2))
        if self._specific is None:
            return shared
        rows = domain_of(onehot) * self.cardinality + ids
        specific = self._specific(rows)
        if batch_penalty:
            self.add_loss(penalty.batch_l2(rows, specific, self.l2))
        return tf.concat([shared, specific], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.shared_dim + self.domain_dim)

    def get_config(self):
        return dict(super().get_config(), cardinality=self.cardinality, shared_dim=self.shared_dim,
                    domain_dim=self.domain_dim, num_domains=self.num_domains, l2=self.l2,
                    l2_scope=self.l2_scope)


@keras.utils.register_keras_serializable(package="rankpipe")
class FeatureAttention(keras.layers.Layer):
    """Per-scene attention on one feature (Alibaba search team, multi-scene
    transfer blog, 2019): h0 = s(W0 e + b0), h1 = s(W1 h0 + b1),
    a = s(W2 h1 + b2), g = a * e, with W0..W2 of the example's own scene (s: sigmoid).

    Returns [g, a]; a lies in (0, 1), one weight per embedding element, so a
    scene can down-weight a feature it does not care about. The model keeps a
    as a named output of this layer so the weights per scene can be reported."""

    def __init__(self, num_domains: int, hidden_units: Sequence[int] = (16, 16), **kwargs):
        super().__init__(**kwargs)
        self.num_domains = int(num_domains)
        self.hidden_units = [int(u) for u in hidden_units]
        self._gate = None

    def build(self, input_shape):
        width = int(input_shape[0][-1])
        self._gate = DomainDNN(self.hidden_units + [width], self.num_domains, activation="sigmoid", name="gate")
        super().build(input_shape)

    def call(self, inputs):
        e, onehot = inputs
        a = self._gate([e, onehot])
        return [a * e, a]

    def compute_output_shape(self, input_shape):
        return [input_shape[0], input_shape[0]]

    def get_config(self):
        return dict(super().get_config(), num_domains=self.num_domains, hidden_units=self.hidden_units)


@keras.utils.register_keras_serializable(package="rankpipe")
class DomainTower(keras.layers.Layer):
    """A head's logit for scene d: W_c^d O^{dc} + W^d O^d + b^d (Alibaba search team,
    multi-scene transfer blog, 2019).

    O^{dc} is a shared tower (same weights for every scene), O^d the example's
    own scene's tower; the output weights W_c^d, W^d, b^d are per scene. Returns
    [logit, O^{dc}, O^d]: the Wasserstein critic compares O^{dc} across scenes
    and O^{dc} with O^d, so both towers end in the same width."""

    def __init__(self, num_domains: int, tower_dnn_hidden_units: Sequence[int] = (64,),
                 domain_tower_dnn_hidden_units: Sequence[int] = (64,), dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_domains = int(num_domains)
        self.tower_dnn_hidden_units = [int(u) for u in tower_dnn_hidden_units]
        self.domain_tower_dnn_hidden_units = [int(u) for u in domain_tower_dnn_hidden_units]
        if not self.tower_dnn_hidden_units or not self.domain_tower_dnn_hidden_units or (
                self.tower_dnn_hidden_units[-1] != self.domain_tower_dnn_hidden_units[-1]):
            raise ValueError("the shared and the scene-specific towers must end in the same width "
                             f"(the critic compares them), got {self.tower_dnn_hidden_units} and "
                             f"{self.domain_tower_dnn_hidden_units}")
        self.dropout = float(dropout)
        self._shared = DNN(self.tower_dnn_hidden_units, dropout=self.dropout, name="shared_tower")
        self._specific = DomainDNN(self.domain_tower_dnn_hidden_units, self.num_domains, dropout=self.dropout,
                                   name="domain_tower")

    def build(self, input_shape):
        width = self.tower_dnn_hidden_units[-1]
        self.per_domain_shared_weight = self.add_weight("per_domain_shared_weight", (self.num_domains, width),
                                                        initializer=_per_domain_glorot(width, 1))
        self.per_domain_specific_weight = self.add_weight("per_domain_specific_weight",
                                                          (self.num_domains, width),
                                                          initializer=_per_domain_glorot(width, 1))
        self.per_domain_bias = self.add_weight("per_domain_bias", (self.num_domains,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs, training=None):
        x, onehot = inputs
        shared = self._shared(x, training=training)
        specific = self._specific([x, onehot], training=training)
        logit = (tf.reduce_sum(shared * (onehot @ self.per_domain_shared_weight), axis=-1, keepdims=True)
                 + tf.reduce_sum(specific * (onehot @ self.per_domain_specific_weight), axis=-1, keepdims=True)
                 + onehot @ self.per_domain_bias[:, None])
        return [logit, shared, specific]

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        width = self.tower_dnn_hidden_units[-1]
        return [(batch, 1), (batch, width), (batch, width)]

    def get_config(self):
        return dict(super().get_config(), num_domains=self.num_domains,
                    tower_dnn_hidden_units=self.tower_dnn_hidden_units,
                    domain_tower_dnn_hidden_units=self.domain_tower_dnn_hidden_units, dropout=self.dropout)


@keras.utils.register_keras_serializable(package="rankpipe")
class PartitionedNorm(keras.layers.Layer):
    """STAR's partitioned normalisation: z' = (g * g_d) (z - E_d) / sqrt(Var_d + eps) + (b + b_d).

    Statistics are per scene: in training the scene's own examples in the batch
    (a scene absent from the batch leaves its moving statistics unchanged), in
    serving the scene's moving averages. Plain batch normalisation would
    normalise every scene with the main scene's statistics."""

    def __init__(self, num_domains: int, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.num_domains = int(num_domains)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        width = int(input_shape[0][-1])
        d = self.num_domains
        self.gamma = self.add_weight("gamma", (width,), initializer="ones")
        self.beta = self.add_weight("beta", (width,), initializer="zeros")
        self.per_domain_gamma = self.add_weight("per_domain_gamma", (d, width), initializer="ones")
        self.per_domain_beta = self.add_weight("per_domain_beta", (d, width), initializer="zeros")
        self.per_domain_moving_mean = self.add_weight("per_domain_moving_mean", (d, width), initializer="zeros",
                                                      trainable=False)
        self.per_domain_moving_variance = self.add_weight("per_domain_moving_variance", (d, width),
                                                          initializer="ones", trainable=False)
        super().build(input_shape)

    def call(self, inputs, training=None):
        x, onehot = inputs
        if training:
            count = tf.reduce_sum(onehot, axis=0)[:, None]                        # (D, 1)
            mean = tf.transpose(onehot) @ x / tf.maximum(count, 1.0)              # (D, width)
            var = tf.maximum(tf.transpose(onehot) @ tf.square(x) / tf.maximum(count, 1.0) - tf.square(mean), 0.0)
            present = count > 0
            m = self.momentum
            self.per_domain_moving_mean.assign(
                tf.where(present, m * self.per_domain_moving_mean + (1 - m) * mean, self.per_domain_moving_mean))
            self.per_domain_moving_variance.assign(
                tf.where(present, m * self.per_domain_moving_variance + (1 - m) * var,
                         self.per_domain_moving_variance))
        else:
            mean, var = self.per_domain_moving_mean, self.per_domain_moving_variance
        z = (x - onehot @ mean) * tf.math.rsqrt(onehot @ var + self.epsilon)
        return z * (self.gamma * (onehot @ self.per_domain_gamma)) + (self.beta + onehot @ self.per_domain_beta)

    def get_config(self):
        return dict(super().get_config(), num_domains=self.num_domains, momentum=self.momentum,
                    epsilon=self.epsilon)
