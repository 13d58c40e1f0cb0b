"""Task heads: the ESMM probability product and AITM's adaptive information transfer unit."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from trainer import initializers


@keras.utils.register_keras_serializable(package="rankpipe")
class ProbabilityProduct(keras.layers.Layer):
    """pCTCVR = pCTR x pCVR (ESMM): a product of probabilities is a probability, never above either."""

    def call(self, inputs):
        ctr, cvr = inputs
        return ctr * cvr


@keras.utils.register_keras_serializable(package="rankpipe")
class AITMTransfer(keras.layers.Layer):
    """Adaptive Information Transfer Module (Xi et al., KDD 2021).

    Inputs [p, q]: p is the previous task's tower representation, q the current
    task's. The transferred information h1(p) and q are combined by
    self-attention over the two: w_u = softmax_u(<h2(u), h3(u)> / sqrt(d)),
    z = sum_u w_u h4(u). ``units`` is d.
    """

    def __init__(self, units: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self._h1 = keras.layers.Dense(self.units, kernel_initializer=initializers.dense(), name="transfer")
        self._h2 = keras.layers.Dense(self.units, kernel_initializer=initializers.dense(), name="query")
        self._h3 = keras.layers.Dense(self.units, kernel_initializer=initializers.dense(), name="key")
        self._h4 = keras.layers.Dense(self.units, kernel_initializer=initializers.dense(), name="value")
        self._project_q = keras.layers.Dense(self.units, kernel_initializer=initializers.dense(), name="project_current")

    def call(self, inputs, return_weights: bool = False):
        p, q = inputs
        u = tf.stack([self._h1(p), self._project_q(q)], axis=1)            # (batch, 2, d)
        scores = tf.reduce_sum(self._h2(u) * self._h3(u), axis=-1) / tf.sqrt(float(self.units))
        weights = tf.nn.softmax(scores, axis=1)                             # (batch, 2)
        z = tf.reduce_sum(weights[..., None] * self._h4(u), axis=1)
        return (z, weights) if return_weights else z

    def get_config(self):
        return dict(super().get_config(), units=self.units)


@keras.utils.register_keras_serializable(package="rankpipe")
class ConditionalProbability(keras.layers.Layer):
    """P(conversion | click) = P(click and conversion) / P(click), clipped to [0, 1]: the CVR
    head of models that predict CTCVR directly (AITM)."""

    def __init__(self, epsilon: float = 1e-7, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        joint, marginal = inputs
        return tf.clip_by_value(joint / tf.maximum(marginal, self.epsilon), 0.0, 1.0)

    def get_config(self):
        return dict(super().get_config(), epsilon=self.epsilon)


@keras.utils.register_keras_serializable(package="rankpipe")
class BehaviorCalibrator(keras.layers.Layer):
    """AITM's behavioural expectation calibrator: adds alpha * mean(max(pCTCVR - pCTR, 0)) to the
    loss (a conversion implies a click), and returns min(pCTCVR, pCTR) so that served heads
    keep the invariant exactly while training pushes the raw estimate toward it."""

    def __init__(self, alpha: float = 0.6, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def call(self, inputs):
        ctcvr, ctr = inputs
        self.add_loss(self.alpha * tf.reduce_mean(tf.nn.relu(ctcvr - ctr)))
        return tf.minimum(ctcvr, ctr)

    def get_config(self):
        return dict(super().get_config(), alpha=self.alpha)
