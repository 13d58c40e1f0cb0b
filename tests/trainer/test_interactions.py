"""Interaction bottoms (trainer/layers/interactions.py): their math, every zoo model with each, a
lossless save/load, config errors, and a product of two ids that FM learns and a concat MLP does not."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from sklearn.metrics import roc_auc_score

from schemas import Feature
from tests.trainer.model_fixtures import FEATURES, SMALL, batch
from trainer import optimizers
from trainer.balancing import MultiTaskModel
from trainer.features import InputFeature
from trainer.layers import CrossNet, FMInteraction
from trainer.models import MODELS, build_model


def test_fm_interaction_is_every_pairwise_dot_product():
    tf.keras.utils.set_random_seed(0)
    layer = FMInteraction([4, 4, 1, 2], dim=4)
    x = np.random.default_rng(0).normal(size=(5, 11)).astype("float32")
    out = layer(x).numpy()
    a, b, num, c = x[:, :4], x[:, 4:8], x[:, 8:9], x[:, 9:]
    fields = [a, b, num @ layer.maps[2].numpy(), c @ layer.maps[3].numpy()]
    expected = np.stack([np.sum(fields[i] * fields[j], axis=1) for i in range(4) for j in range(i + 1, 4)], axis=1)
    assert layer.maps[0] is None and layer.maps[1] is None  # fields already of width dim are used as they are
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rank", [0, 3])
def test_cross_net_follows_dcn_v2(rank):
    tf.keras.utils.set_random_seed(0)
    layer = CrossNet(2, rank)
    x0 = np.random.default_rng(1).normal(size=(6, 8)).astype("float32")
    out = layer(x0).numpy()
    x = x0
    for i in range(2):
        w = layer.u[i].numpy() if rank == 0 else layer.v[i].numpy() @ layer.u[i].numpy()
        x = x0 * (x @ w + layer.b[i].numpy()) + x
    np.testing.assert_allclose(out, x, rtol=1e-4, atol=1e-5)
    assert (len(layer.v) == 0) == (rank == 0)


@pytest.mark.parametrize("bottom", [{"bottom": "fm"}, {"bottom": "dcn_v2"},
                                    {"bottom": "dcn_v2", "bottom_params": {"structure": "parallel", "rank": 4}}])
def test_every_model_takes_every_bottom(bottom):
    x = batch(32, seed=1)
    for name in sorted(MODELS):
        tf.keras.utils.set_random_seed(1)
        model = build_model(name, FEATURES, dict(SMALL[name], **bottom))
        out = model(x, training=False)
        assert all(out[h].shape == (32, 1) for h in ("ctr", "cvr", "ctcvr")), name
        kinds = {type(layer).__name__ for layer in model.layers}
        assert ("FMInteraction" if bottom["bottom"] == "fm" else "CrossNet") in kinds, name


@pytest.mark.parametrize("name,bottom", [("mmoe", "fm"), ("transfer", "dcn_v2"), ("star", "fm")])
def test_bottoms_save_and_reload_without_custom_code(name, bottom, tmp_path):
    tf.keras.utils.set_random_seed(2)
    model = build_model(name, FEATURES, dict(SMALL[name], bottom=bottom))
    x = batch(16, seed=3)
    before = model.predict(x, verbose=0)
    model.save(str(tmp_path / "m"), save_format="tf")
    after = keras.models.load_model(str(tmp_path / "m")).predict(x, verbose=0)
    for head in ("ctr", "cvr", "ctcvr"):
        np.testing.assert_array_equal(before[head], after[head])


def test_bad_bottoms_are_config_errors():
    with pytest.raises(ValueError, match="bottom must be one of"):
        build_model("esmm", FEATURES, dict(SMALL["esmm"], bottom="cin"))
    with pytest.raises(ValueError, match=r"\['rank'\] do not apply to bottom 'fm'"):
        build_model("esmm", FEATURES, dict(SMALL["esmm"], bottom="fm", bottom_params={"rank": 4}))
    with pytest.raises(ValueError, match="structure must be 'stacked' or 'parallel'"):
        build_model("esmm", FEATURES, dict(SMALL["esmm"], bottom="dcn_v2", bottom_params={"structure": "side"}))


def test_fm_learns_a_product_of_two_ids_that_a_concat_mlp_of_the_same_size_does_not():
    """Click logit = ⟨u_a, v_b⟩ for latent vectors of two id features; the eval rows are id pairs never
    seen in training, so only a model that multiplies the two embeddings can rank them."""
    rng = np.random.default_rng(0)
    n, k = 60, 8
    u, v = rng.normal(size=(n, k)), rng.normal(size=(n, k))
    pairs = np.array([(i, j) for i in range(n) for j in range(n)])
    rng.shuffle(pairs)
    cut = int(0.7 * len(pairs))

    def rows(p):
        p = np.repeat(p, 12, axis=0)
        logit = 3.0 / np.sqrt(k) * np.sum(u[p[:, 0]] * v[p[:, 1]], axis=1)
        return {"a": p[:, :1], "b": p[:, 1:]}, (rng.random(len(p)) < 1 / (1 + np.exp(-logit))).astype("float32")
    (x_train, y_train), (x_eval, y_eval) = rows(pairs[:cut]), rows(pairs[cut:])
    features = [InputFeature(Feature(f, "hashed", embedding_dim=8, hash_buckets=n), n) for f in ("a", "b")]
    auc = {}
    for bottom in ("concat", "fm"):
        tf.keras.utils.set_random_seed(0)
        model = build_model("shared_bottom", features, {"bottom_dnn_hidden_units": [32],
                                                        "tower_dnn_hidden_units": [16], "bottom": bottom})
        trainable = MultiTaskModel(model, {"ctr": 1.0})
        trainable.compile(optimizer=optimizers.make("adam", 0.01))
        trainable.fit(x_train, {"ctr": y_train[:, None]}, batch_size=256, epochs=8, verbose=0)
        auc[bottom] = roc_auc_score(y_eval, model.predict(x_eval, batch_size=4096, verbose=0)["ctr"].ravel())
    assert auc["fm"] > 0.85 and auc["fm"] > auc["concat"] + 0.04, auc
