"""AutoGraph skips tf_keras's own code but still converts ours (trainer/autograph_rules.py)."""
import numpy as np
import tensorflow as tf
import tf_keras as keras
from tensorflow.python.autograph.impl import conversion

import trainer.layers  # noqa: F401  (installs the rule, as every model build does)
from trainer import autograph_rules


def _our_function(x):
    return x


def test_tf_keras_internals_are_skipped_and_our_code_is_not():
    assert conversion.is_allowlisted(keras.Model.train_step)
    assert conversion.is_allowlisted(keras.metrics.AUC.update_state)
    assert not conversion.is_allowlisted(_our_function)
    assert not conversion.is_allowlisted(trainer.layers.DNN.call)


def test_installing_twice_adds_one_rule():
    from tensorflow.python.autograph.core import config
    assert autograph_rules.install() and autograph_rules.install()
    prefixes = [getattr(r, "_prefix", None) for r in config.CONVERSION_RULES]
    assert prefixes.count("tf_keras") == 1


class _SignFlip(keras.layers.Layer):
    """Python control flow on a tensor: only runs in a graph if AutoGraph converts this call."""

    def call(self, x):
        if tf.reduce_mean(x) > 0:
            return x * 2.0
        return x * -1.0


def test_a_layer_whose_call_needs_autograph_still_trains_and_predicts():
    inputs = keras.Input(shape=(1,))
    model = keras.Model(inputs, keras.layers.Dense(1, kernel_initializer="ones", use_bias=False)(_SignFlip()(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    history = model.fit(np.ones((8, 1), "float32"), np.full((8, 1), 2.0, "float32"), epochs=1, verbose=0)
    assert history.history["loss"] == [0.0]  # the positive branch: 1 * 2 = 2
    negative = model.predict(np.full((4, 1), -3.0, "float32"), verbose=0)
    np.testing.assert_allclose(negative, np.full((4, 1), 3.0))  # the other branch: -3 * -1
