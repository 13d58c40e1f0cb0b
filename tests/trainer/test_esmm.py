import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from schemas import Feature
from trainer.features import InputFeature
from trainer.models import build_model

FEATURES = [
    InputFeature(Feature("scene", "scene", embedding_dim=4), 5),
    InputFeature(Feature("item", "hashed", embedding_dim=8, hash_buckets=100), 100),
    InputFeature(Feature("price", "numeric"), 0),
]


def _batch(n=256, seed=0):
    rng = np.random.default_rng(seed)
    return {"scene": rng.integers(0, 5, (n, 1)), "item": rng.integers(0, 100, (n, 1)),
            "price": rng.normal(size=(n, 1)).astype("float32")}


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


def test_save_load_round_trip_gives_identical_predictions(model, tmp_path):
    x = _batch(64, seed=3)
    before = model.predict(x, verbose=0)
    model.save(str(tmp_path / "m"), save_format="tf")
    loaded = keras.models.load_model(str(tmp_path / "m"))
    after = loaded.predict(x, verbose=0)
    for head in before:
        np.testing.assert_array_equal(before[head], after[head])


def test_unknown_model_name_is_rejected():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nope", FEATURES, {})
