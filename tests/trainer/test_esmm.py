import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tests.trainer.model_fixtures import FEATURES
from tests.trainer.model_fixtures import batch as _batch
from trainer.models import build_model


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(1)
    return build_model("esmm", FEATURES, {"tower_dnn_hidden_units": [16, 8]})


def test_heads_are_probabilities_and_ctcvr_is_the_product(model):
    out = model.predict(_batch(), verbose=0)
    assert set(out) == {"ctr", "cvr", "ctcvr"}
    for v in out.values():
        assert v.shape == (256, 1) and np.all((v >= 0) & (v <= 1))
    np.testing.assert_allclose(out["ctcvr"], out["ctr"] * out["cvr"], rtol=1e-6)
    assert np.all(out["ctcvr"] <= out["ctr"] + 1e-7)


def test_cvr_tower_learns_through_the_ctcvr_loss_alone(model):
    """ESMM trains no loss on cvr directly; its tower must still receive gradients via ctcvr."""
    x = _batch()
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = keras.losses.binary_crossentropy(tf.ones_like(out["ctcvr"]), out["ctcvr"])
    grads = dict(zip([v.name for v in model.trainable_variables],
                     tape.gradient(loss, model.trainable_variables)))
    cvr_grads = [g for n, g in grads.items() if n.startswith("cvr")]
    assert cvr_grads and all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in cvr_grads)
