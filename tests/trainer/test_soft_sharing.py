"""The soft-sharing baselines (``layers/task_networks.py``): independent task networks, cross-stitch
mixing after every layer, the L2 distance between corresponding kernels; and the single-task
model, which shares no parameter between tasks."""
import numpy as np
import pytest
import tensorflow as tf

from tests.trainer.model_fixtures import FEATURES, SMALL, batch
from trainer.layers import TaskNetworks
from trainer.models import build_model


def _relu(x):
    return np.maximum(x, 0)


def test_independent_task_networks_compute_each_task_from_its_own_kernels_only():
    tf.keras.utils.set_random_seed(3)
    layer = TaskNetworks(3, [6, 4])
    x = tf.random.normal((8, 5))
    layer(x)
    for b in layer.biases:
        b.assign(tf.random.normal(b.shape))
    outs = [o.numpy() for o in layer(x)]
    for t in range(3):
        k0, k1 = layer.kernels[0].numpy()[t], layer.kernels[1].numpy()[t]
        b0, b1 = layer.biases[0].numpy()[t], layer.biases[1].numpy()[t]
        np.testing.assert_allclose(outs[t], _relu(_relu(x.numpy() @ k0 + b0) @ k1 + b1), rtol=1e-5, atol=1e-6)
    assert not layer.losses


def test_cross_stitch_mixes_the_tasks_activations_after_every_layer():
    tf.keras.utils.set_random_seed(4)
    layer = TaskNetworks(2, [6, 3], cross_stitch=True, stitch_init=0.8)
    x = tf.random.normal((8, 5))
    layer(x)
    np.testing.assert_allclose(layer.stitches[0].numpy(), [[0.8, 0.2], [0.2, 0.8]], rtol=1e-6)
    layer.stitches[1].assign([[0.5, 2.0], [-1.0, 1.5]])
    outs = [o.numpy() for o in layer(x)]
    h = np.stack([_relu(x.numpy() @ layer.kernels[0].numpy()[t]) for t in range(2)])
    h = np.einsum("ts,sbo->tbo", layer.stitches[0].numpy(), h)
    h = np.stack([_relu(h[t] @ layer.kernels[1].numpy()[t]) for t in range(2)])
    h = np.einsum("ts,sbo->tbo", layer.stitches[1].numpy(), h)
    for t in range(2):
        np.testing.assert_allclose(outs[t], h[t], rtol=1e-5, atol=1e-6)
    # The identity stitch is independent networks.
    plain = TaskNetworks(2, [6, 3])
    plain(x)
    for mine, theirs in zip(plain.weights, [w for w in layer.weights if "stitch" not in w.name]):
        mine.assign(theirs)
    for s in layer.stitches:
        s.assign(tf.eye(2))
    for a, b in zip(layer(x), plain(x)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def test_the_l2_penalty_is_the_distance_between_every_pair_of_task_kernels_and_pulls_them_together():
    tf.keras.utils.set_random_seed(5)
    layer = TaskNetworks(3, [4, 2], l2_distance=0.5)
    x = tf.random.normal((8, 3))
    layer(x)
    kernels = [k.numpy() for k in layer.kernels]
    expected = 0.5 * sum(np.sum((k[i] - k[j]) ** 2) for k in kernels for i in range(3) for j in range(i + 1, 3))
    np.testing.assert_allclose(float(tf.add_n(layer.losses)), expected, rtol=1e-5)
    optimizer = tf.keras.optimizers.SGD(0.05)
    for _ in range(20):
        with tf.GradientTape() as tape:
            layer(x)
            loss = tf.add_n(layer.losses)
        optimizer.apply_gradients(zip(tape.gradient(loss, layer.kernels), layer.kernels))
    layer(x)
    assert float(tf.add_n(layer.losses)) < 0.5 * expected
    # The mean of the task kernels does not move: the penalty only pulls them together.
    for before, k in zip(kernels, layer.kernels):
        np.testing.assert_allclose(k.numpy().mean(axis=0), before.mean(axis=0), atol=1e-5)


@pytest.mark.parametrize("kwargs,match", [({"stitch_init": 0.0}, "stitch_init"), ({"stitch_init": 1.5}, "stitch_init"),
                                          ({"l2_distance": -1.0}, "l2_distance"), ({"hidden_units": []}, "at least one"),
                                          ({"num_tasks": 0}, "num_tasks")])
def test_bad_settings_are_errors_naming_the_setting(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TaskNetworks(**dict({"num_tasks": 2, "hidden_units": [4]}, **kwargs))


def test_the_l2_constrained_model_carries_the_penalty_and_cross_stitch_the_stitches():
    tf.keras.utils.set_random_seed(1)
    l2 = build_model("l2_constrained", FEATURES, SMALL["l2_constrained"])
    l2(batch(16), training=True)
    assert len(l2.losses) == 1 and float(l2.losses[0]) > 0
    stitched = build_model("cross_stitch", FEATURES, SMALL["cross_stitch"])
    names = [w.name for w in stitched.trainable_weights if "stitch_" in w.name]
    assert len(names) == len(SMALL["cross_stitch"]["bottom_dnn_hidden_units"])


def test_the_single_task_model_shares_no_parameter_between_its_tasks():
    tf.keras.utils.set_random_seed(1)
    model = build_model("single_task", FEATURES, SMALL["single_task"])
    x = batch(64, seed=2)
    with tf.GradientTape() as tape:
        ctr = model(x)["ctr"]
    grads = tape.gradient(ctr, model.trainable_variables)
    reached = {v.name.split("/")[0] for v, g in zip(model.trainable_variables, grads) if g is not None}
    assert reached and all(name.startswith(("ctr_", "ctr")) for name in reached), reached
    assert any(v.name.startswith("cvr_emb") for v in model.trainable_variables)
