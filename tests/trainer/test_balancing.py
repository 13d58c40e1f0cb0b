"""Loss balancing on toy problems where each method's behaviour is checkable."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from trainer.balancing import MultiTaskModel


def _toy_model():
    x = keras.Input((8,), name="x")
    shared = keras.layers.Dense(16, activation="relu", name="shared")(x)
    a = keras.layers.Dense(1, activation="sigmoid", name="a")(keras.layers.Dense(8, name="tower_a")(shared))
    b = keras.layers.Dense(1, activation="sigmoid", name="b")(keras.layers.Dense(8, name="tower_b")(shared))
    return keras.Model(x, {"a": a, "b": b})


def _data(n=4096, seed=0, b_noise=False, b_scale=3.0):
    """Task a: a sharp function of x[0]; task b: a weak function of x[1] (slow to learn), or pure noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    a = (x[:, 0] > 0).astype("float32")[:, None]
    if b_noise:
        b = rng.integers(0, 2, n).astype("float32")[:, None]
    else:
        b = (rng.random(n) < 1 / (1 + np.exp(-x[:, 1] / b_scale))).astype("float32")[:, None]
    return tf.data.Dataset.from_tensor_slices((x, {"a": a, "b": b})).batch(128)


def _fit(method, weights, data, epochs=6, **kw):
    tf.keras.utils.set_random_seed(0)
    m = MultiTaskModel(_toy_model(), weights, method=method, **kw)
    m.compile(optimizer=keras.optimizers.Adam(0.01))
    hist = m.fit(data, epochs=epochs, verbose=0)
    return m, hist.history


def test_fixed_weights_stay_fixed_and_a_zero_weight_task_does_not_train():
    tf.keras.utils.set_random_seed(0)
    model = _toy_model()
    before = {v.name: v.numpy().copy() for v in model.trainable_variables}
    m = MultiTaskModel(model, {"a": 1.0, "b": 0.0}, method="fixed")
    m.compile(optimizer=keras.optimizers.SGD(0.1))
    m.fit(_data(), epochs=1, verbose=0)
    np.testing.assert_array_equal(m.effective_weights().numpy(), [1.0, 0.0])
    changed = {v.name for v in model.trainable_variables if not np.array_equal(before[v.name], v.numpy())}
    assert any(n.startswith("tower_a") for n in changed) and not any(n.startswith("tower_b") for n in changed)


def test_uncertainty_weighting_down_weights_the_noisy_task_toward_one_over_twice_its_loss():
    m, hist = _fit("uncertainty", {"a": 1.0, "b": 1.0}, _data(b_noise=True), epochs=15)
    w = m.effective_weights().numpy()
    assert w[0] > 2 * w[1]  # the learnable task ends up weighted far above the noise
    loss_b = hist["b_loss"][-1]
    assert w[1] == pytest.approx(1 / (2 * loss_b), rel=0.15)  # the analytic optimum exp(-s) = 1/(2L)


def test_gradnorm_moves_weight_to_the_slower_task_and_evens_out_training_rates():
    data = _data()
    fixed, fixed_hist = _fit("fixed", {"a": 1.0, "b": 1.0}, data)
    gn, gn_hist = _fit("gradnorm", {"a": 1.0, "b": 1.0}, data, gradnorm_alpha=1.5)
    w = gn.effective_weights().numpy()
    assert w.sum() == pytest.approx(2.0, rel=1e-5)
    assert w[1] > w[0]  # b learns slower (its loss ratio stays higher), so it gains weight

    def rate_gap(h):  # |L_a(t)/L_a(0) - L_b(t)/L_b(0)| at the end of training
        return abs(h["a_loss"][-1] / h["a_loss"][0] - h["b_loss"][-1] / h["b_loss"][0])
    assert rate_gap(gn_hist) < rate_gap(fixed_hist)


def test_unknown_method_and_unknown_head_are_errors():
    with pytest.raises(ValueError, match="loss_balancing.method"):
        MultiTaskModel(_toy_model(), {"a": 1.0}, method="magic")
    with pytest.raises(ValueError, match="does not output"):
        MultiTaskModel(_toy_model(), {"c": 1.0})
