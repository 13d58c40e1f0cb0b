"""Multi-domain models: scene-specific parameters, per-scene attention, the Wasserstein critic, composition."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from schemas import Feature
from tests.trainer.model_fixtures import FEATURES, batch, labels
from trainer.adversarial import DomainAdversarialModel, per_scene_mean
from trainer.balancing import MultiTaskModel
from trainer.features import InputFeature
from trainer.layers import PartitionedNorm
from trainer.models import build_model
from trainer.models.transfer import attention_by_scene, attention_layers
from trainer.training_model import training_model

TRANSFER = {"tower_dnn_hidden_units": [16], "domain_tower_dnn_hidden_units": [16], "attention_hidden_units": [8, 8]}
COMPOSITIONS = [
    ("transfer", dict(TRANSFER, multi_task="esmm")),
    ("transfer", dict(TRANSFER, multi_task="mmoe", multi_task_params={"num_experts": 3,
                                                                      "expert_dnn_hidden_units": [16]})),
    ("transfer", dict(TRANSFER, multi_task="ple", multi_task_params={"expert_dnn_hidden_units": [8]})),
    ("star", {"tower_dnn_hidden_units": [16], "multi_task": "esmm"}),
    ("star", {"tower_dnn_hidden_units": [16], "multi_task": "mmoe", "multi_task_params": {"num_experts": 2}}),
    ("transfer", dict(TRANSFER, multi_task="cross_stitch", multi_task_params={"bottom_dnn_hidden_units": [8]})),
    ("transfer", dict(TRANSFER, multi_task="gmsl", multi_task_params={"bottom_dnn_hidden_units": [8],
                                                                      "task_dnn_hidden_units": [8], "gru_units": 4})),
    ("star", {"tower_dnn_hidden_units": [16], "multi_task": "l2_constrained",
              "multi_task_params": {"bottom_dnn_hidden_units": [8], "l2_distance": 0.1}}),
]
WEIGHTS = {"ctr": 1.0, "ctcvr": 1.0}


@pytest.mark.parametrize("name,params", COMPOSITIONS, ids=[f"{n}-{p['multi_task']}" for n, p in COMPOSITIONS])
def test_any_zoo_middle_on_a_multi_domain_backbone_predicts_every_head(name, params):
    model = build_model(name, FEATURES, params)
    out = model.predict(batch(128, seed=5), verbose=0)
    assert set(out) == {"ctr", "cvr", "ctcvr"}
    assert all(np.all((v > 0) & (v < 1)) for v in out.values())
    np.testing.assert_allclose(out["ctcvr"], out["ctr"] * out["cvr"], rtol=1e-6)


@pytest.mark.parametrize("name,params", [COMPOSITIONS[1], COMPOSITIONS[4]], ids=["transfer-mmoe", "star-mmoe"])
def test_a_trained_multi_domain_model_round_trips_through_a_saved_model(name, params, tmp_path):
    """After training (STAR's moving statistics and every scene's weights have moved), the
    SavedModel's serving signature gives the in-memory model's predictions."""
    tf.keras.utils.set_random_seed(3)
    model = build_model(name, FEATURES, params)
    trainable = training_model(model, FEATURES, {"loss_weights": WEIGHTS, "multi_domain": {"critic_steps": 1}})
    trainable.compile(optimizer=keras.optimizers.Adam(1e-2))
    trainable.fit(batch(512, seed=4), labels(512), batch_size=128, epochs=1, verbose=0)
    probe = batch(64, seed=5)
    before = model.predict(probe, verbose=0)
    model.save(str(tmp_path / "m"), save_format="tf")
    served = tf.saved_model.load(str(tmp_path / "m")).signatures["serving_default"](
        **{k: tf.constant(v) for k, v in probe.items()})
    for head in ("ctr", "cvr", "ctcvr"):
        np.testing.assert_allclose(before[head], served[head].numpy(), rtol=1e-6)


@pytest.mark.parametrize("name,params", [COMPOSITIONS[1], COMPOSITIONS[3]], ids=["transfer-mmoe", "star-esmm"])
def test_scene_specific_parameters_get_gradients_only_from_their_own_scene(name, params):
    tf.keras.utils.set_random_seed(1)
    model = build_model(name, FEATURES, params)
    per_domain = [v for v in model.trainable_variables if "per_domain" in v.name]
    assert len(per_domain) >= 4
    for scene in (0, 3):
        x = batch(256, seed=scene)
        x["scene"] = np.full_like(x["scene"], scene)
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            y = labels(256, seed=scene)
            loss = tf.reduce_mean(keras.losses.binary_crossentropy(y["ctr"], out["ctr"])
                                  + keras.losses.binary_crossentropy(y["ctcvr"], out["ctcvr"]))
        for v, g in zip(per_domain, tape.gradient(loss, per_domain)):
            by_scene = tf.reshape(tf.convert_to_tensor(g), [5, -1]).numpy()  # domain-major layout
            others = np.delete(by_scene, scene, axis=0)
            assert np.all(others == 0), f"{v.name} got gradient from scene {scene} in another scene's slice"
            assert np.any(by_scene[scene] != 0), f"{v.name}: scene {scene}'s own slice got no gradient"


@pytest.mark.parametrize("name", ["transfer", "star"])
def test_an_unknown_scene_is_served_as_the_most_frequent_one(name):
    """The Transform maps a scene unseen in training to its OOV index (here 4: four known
    scenes); every scene-specific and scene-embedding lookup then uses scene 0's."""
    features = [InputFeature(Feature("scene", "scene", embedding_dim=4), 5, ("main", "shop", "partner", "promo"))]
    model = build_model(name, features + FEATURES[1:], {})
    x = batch(32, seed=6)
    main, unknown = dict(x), dict(x)
    main["scene"] = np.zeros_like(x["scene"])
    unknown["scene"] = np.full_like(x["scene"], 4)
    np.testing.assert_array_equal(model.predict(main, verbose=0)["ctr"], model.predict(unknown, verbose=0)["ctr"])


def test_partitioned_norm_standardises_each_scene_with_its_own_statistics():
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 3, 3000)
    x = rng.normal(0, 1, (3000, 4)) * (1 + 3 * scene[:, None]) + 10 * scene[:, None]  # scenes far apart
    norm = PartitionedNorm(3)
    onehot = tf.one_hot(scene, 3)
    z = norm([tf.constant(x, tf.float32), onehot], training=True).numpy()
    for d in range(3):
        np.testing.assert_allclose(z[scene == d].mean(axis=0), 0, atol=1e-3)
        np.testing.assert_allclose(z[scene == d].std(axis=0), 1, atol=1e-2)
    for _ in range(600):
        norm([tf.constant(x, tf.float32), onehot], training=True)
    served = norm([tf.constant(x, tf.float32), onehot], training=False).numpy()
    np.testing.assert_allclose(served, z, atol=2e-2)  # moving statistics converge to each scene's own


def test_per_scene_mean_weighs_every_present_scene_equally():
    losses = tf.constant([1.0, 1.0, 1.0, 4.0])
    onehot = tf.one_hot([0, 0, 0, 2], 3)  # scene 1 absent, scene 2 has one example
    assert float(per_scene_mean(losses, onehot)) == pytest.approx((1.0 + 4.0) / 2)


# ---- per-scene attention --------------------------------------------------------------------------
PREFERENCE = [InputFeature(Feature("scene", "scene", embedding_dim=2), 2, ("brand_lovers", "bargain_hunters")),
              InputFeature(Feature("a", "hashed", embedding_dim=4, hash_buckets=30), 30),
              InputFeature(Feature("b", "hashed", embedding_dim=4, hash_buckets=30), 30)]


def preference_data(n, seed):
    """Scene 0's clicks depend only on feature a, scene 1's only on feature b."""
    rng = np.random.default_rng(seed)
    effect = np.random.default_rng(99).normal(0, 2.0, (2, 30))
    s, a, b = rng.integers(0, 2, n), rng.integers(0, 30, n), rng.integers(0, 30, n)
    click = (rng.random(n) < 1 / (1 + np.exp(1 - np.where(s == 0, effect[0][a], effect[1][b])))).astype("float32")
    conversion = click * (rng.random(n) < 0.3)
    return ({"scene": s[:, None], "a": a[:, None], "b": b[:, None]},
            {"ctr": click[:, None], "ctcvr": conversion[:, None].astype("float32")})


def test_attention_weights_are_in_0_1_and_follow_each_scenes_preferred_feature():
    tf.keras.utils.set_random_seed(0)
    model = build_model("transfer", PREFERENCE, TRANSFER)
    x, y = preference_data(12000, seed=1)
    trainable = MultiTaskModel(model, WEIGHTS)
    trainable.compile(optimizer=keras.optimizers.Adam(3e-3))
    trainable.fit(x, y, batch_size=512, epochs=6, verbose=0)
    weights = keras.Model(model.inputs, model.get_layer("attention_a").output[1]).predict(x, verbose=0)
    assert np.all((weights > 0) & (weights < 1))
    assert list(attention_layers(model)) == ["scene", "a", "b"]
    table = attention_by_scene(model, [x], "scene", 2)  # rows: scenes; columns: scene, a, b
    a, b = 1, 2
    assert table[0, a] > table[0, b] + 0.1, table  # scene 0 attends to a
    assert table[1, b] > table[1, a] + 0.1, table  # scene 1 attends to b
    assert table[0, a] > table[1, a] + 0.1 and table[1, b] > table[0, b] + 0.1, table


# ---- the Wasserstein regulariser ------------------------------------------------------------------
SHIFT = [InputFeature(Feature("scene", "scene", embedding_dim=2), 2, ("main", "small")),
         InputFeature(Feature("a", "hashed", embedding_dim=4, hash_buckets=30), 30),
         InputFeature(Feature("p", "numeric"), 0)]


def shifted_data(n, seed):
    """A domain shift: the small scene sees other ids and higher p; the label rule is the same."""
    rng = np.random.default_rng(seed)
    effect = np.random.default_rng(99).normal(0, 1.0, 30)
    s = (rng.random(n) < 0.3).astype(int)
    a = np.where(s == 0, rng.integers(0, 15, n), rng.integers(15, 30, n))
    p = rng.normal(0, 1, n) + 2.0 * s
    click = (rng.random(n) < 1 / (1 + np.exp(1 - effect[a] - 0.5 * p))).astype("float32")
    conversion = click * (rng.random(n) < 0.3)
    return ({"scene": s[:, None], "a": a[:, None], "p": p[:, None].astype("float32")},
            {"ctr": click[:, None], "ctcvr": conversion[:, None].astype("float32")})


def train_with_critic(weight: float, x, y):
    tf.keras.utils.set_random_seed(0)
    model = build_model("transfer", SHIFT, TRANSFER)
    trainable = DomainAdversarialModel(model, WEIGHTS, scene_vocabulary=("main", "small"),
                                       adversarial_weight=weight, critic_steps=3)
    trainable.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = trainable.fit_critic(x, 150)
    history = trainable.fit(x, y, batch_size=512, epochs=6, verbose=0).history
    return before, trainable.fit_critic(x, 150), history


def test_the_critics_estimate_of_the_shared_distance_falls_under_the_adversarial_term():
    x, y = shifted_data(8000, seed=1)
    before, after, history = train_with_critic(1.0, x, y)
    _, ablation, ablation_history = train_with_critic(0.0, x, y)
    assert before["d_c"] > 0.3, before  # the shift is visible in the untrained shared tower
    assert after["d_c"] < 0.6 * before["d_c"], (before, after)  # a converged critic, after training
    assert history["d_c"][-1] < 0.5 * history["d_c"][0], history["d_c"]  # the training critic's own view
    assert ablation["d_c"] > after["d_c"] + 0.2, (ablation, after)  # lambda = 0 leaves the shift in place
    assert after["d_s"] > ablation["d_s"] and after["d_t"] > before["d_t"] - 0.1, (before, after, ablation)
    assert set(ablation_history) >= {"d_c", "d_s", "d_t", "critic_gradient_penalty"}  # logged in the ablation too


def test_weight_clipping_keeps_every_critic_weight_in_bounds():
    x, y = shifted_data(2000, seed=2)
    model = build_model("transfer", SHIFT, TRANSFER)
    trainable = DomainAdversarialModel(model, WEIGHTS, lipschitz="clip", clip_value=0.05, critic_steps=2)
    trainable.compile(optimizer=keras.optimizers.Adam(3e-3))
    trainable.fit(x, y, batch_size=500, epochs=1, verbose=0)
    assert max(float(tf.reduce_max(tf.abs(v))) for v in trainable.critic.trainable_variables) <= 0.05 + 1e-7


def test_configuration_errors_name_the_setting():
    model = build_model("transfer", SHIFT, TRANSFER)
    with pytest.raises(ValueError, match="source_scene 'promo' is not a scene"):
        DomainAdversarialModel(model, WEIGHTS, scene_vocabulary=("main", "small"), source_scene="promo")
    with pytest.raises(ValueError, match="lipschitz must be one of"):
        DomainAdversarialModel(model, WEIGHTS, lipschitz="spectral")
    with pytest.raises(ValueError, match="unknown keys \\['critic_stpes'\\]"):
        training_model(model, SHIFT, {"loss_weights": WEIGHTS, "multi_domain": {"critic_stpes": 2}})
    with pytest.raises(ValueError, match="need the transfer model"):
        DomainAdversarialModel(build_model("esmm", SHIFT, {}), WEIGHTS)
    with pytest.raises(ValueError, match="multi_task_params \\['tower_dnn_hidden_units'\\]"):
        build_model("transfer", SHIFT, {"multi_task": "mmoe", "multi_task_params": {"tower_dnn_hidden_units": [8]}})
    with pytest.raises(ValueError, match="cannot sit on a multi-domain backbone"):
        build_model("star", SHIFT, {"multi_task": "aitm"})
    with pytest.raises(ValueError, match="exactly one feature of kind 'scene'"):
        build_model("transfer", SHIFT[1:], {})
    with pytest.raises(ValueError, match="same width"):
        build_model("transfer", SHIFT, {"tower_dnn_hidden_units": [16], "domain_tower_dnn_hidden_units": [8]})
    assert isinstance(training_model(build_model("star", SHIFT, {}), SHIFT, {"loss_weights": WEIGHTS}),
                      MultiTaskModel)
