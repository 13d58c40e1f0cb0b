"""Lazy Adam moves only the embedding rows a batch looked up, and otherwise is Keras' Adam."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from trainer import optimizers


def _embedding_steps(optimizer, ids_per_step, rows=6, dim=3, seed=0):
    tf.keras.utils.set_random_seed(seed)
    layer = keras.layers.Embedding(rows, dim)
    layer.build((None,))
    target = tf.constant(np.random.default_rng(seed).normal(size=(rows, dim)), tf.float32)
    for ids in ids_per_step:
        ids = tf.constant(ids)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(layer(ids) - tf.gather(target, ids)))
        grads = tape.gradient(loss, layer.trainable_variables)
        assert isinstance(grads[0], tf.IndexedSlices)
        optimizer.apply_gradients(zip(grads, layer.trainable_variables))
    return layer.embeddings.numpy(), optimizer


def test_rows_not_looked_up_keep_their_values_and_moments():
    start, _ = _embedding_steps(optimizers.make("lazy_adam", 0.1), [])
    after, opt = _embedding_steps(optimizers.make("lazy_adam", 0.1), [[0, 2, 2], [2, 0]])
    np.testing.assert_array_equal(after[[1, 3, 4, 5]], start[[1, 3, 4, 5]])
    assert not np.allclose(after[[0, 2]], start[[0, 2]])
    m, v = opt._momentums[0].numpy(), opt._velocities[0].numpy()
    assert np.all(m[[1, 3, 4, 5]] == 0) and np.all(v[[1, 3, 4, 5]] == 0)
    assert np.all(v[[0, 2]] > 0)


@pytest.mark.parametrize("steps", [[[0, 1, 2, 3, 4, 5]], [[5, 4, 3, 2, 1, 0, 0], [0, 1, 2, 3, 4, 5, 5]]])
def test_equals_keras_adam_when_every_row_is_looked_up(steps):
    """Duplicate ids in a batch are summed first (as Keras does); a step touching every row is Adam's."""
    lazy, _ = _embedding_steps(optimizers.make("lazy_adam", 0.05), steps)
    dense, _ = _embedding_steps(keras.optimizers.Adam(0.05), steps)
    np.testing.assert_allclose(lazy, dense, rtol=1e-5, atol=1e-6)


def test_dense_variables_get_keras_adam_exactly():
    def run(opt):
        tf.keras.utils.set_random_seed(3)
        layer = keras.layers.Dense(2)
        x = tf.constant(np.random.default_rng(1).normal(size=(8, 4)), tf.float32)
        for _ in range(3):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(layer(x)))
            opt.apply_gradients(zip(tape.gradient(loss, layer.trainable_variables), layer.trainable_variables))
        return [w.numpy() for w in layer.weights]
    for a, b in zip(run(optimizers.make("lazy_adam", 0.01)), run(keras.optimizers.Adam(0.01))):
        np.testing.assert_array_equal(a, b)


def test_unknown_optimizer_is_a_config_error():
    with pytest.raises(ValueError, match="trainer.optimizer must be one of"):
        optimizers.make("sgd", 0.1)
