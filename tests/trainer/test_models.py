"""Every model of the zoo: named heads in [0, 1], ctcvr <= ctr, a lossless save/load, gradients everywhere."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tests.trainer.model_fixtures import FEATURES, SMALL, batch
from trainer.layers import CGC, Experts, Gate
from trainer.models import MODELS, build_model

ESMM_STYLE = ["shared_bottom", "esmm", "mmoe", "omoe", "ple", "transfer", "star", "single_task", "cross_stitch",
              "l2_constrained", "gmsl", "bayes_chain"]


@pytest.fixture(scope="module", params=sorted(MODELS))
def named_model(request):
    tf.keras.utils.set_random_seed(1)
    return request.param, build_model(request.param, FEATURES, SMALL[request.param])


def test_heads_are_named_probabilities_and_ctcvr_never_exceeds_ctr(named_model):
    name, model = named_model
    out = model.predict(batch(), verbose=0)
    assert set(out) == {"ctr", "cvr", "ctcvr"}
    for v in out.values():
        assert v.shape == (256, 1) and np.all(np.isfinite(v)) and np.all((v >= 0) & (v <= 1))
    assert np.all(out["ctcvr"] <= out["ctr"] + 1e-7)
    if name in ESMM_STYLE:
        np.testing.assert_allclose(out["ctcvr"], out["ctr"] * out["cvr"], rtol=1e-6)
    else:  # AITM predicts ctcvr; cvr is the conditional probability
        np.testing.assert_allclose(out["cvr"] * out["ctr"], out["ctcvr"], rtol=1e-4, atol=1e-7)


def test_entire_space_losses_reach_every_trainable_variable(named_model):
    _, model = named_model
    x = batch(512, seed=2)
    rng = np.random.default_rng(5)
    click = rng.integers(0, 2, (512, 1)).astype("float32")
    conv = click * rng.integers(0, 2, (512, 1)).astype("float32")
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = (keras.losses.binary_crossentropy(click, out["ctr"]) +
                keras.losses.binary_crossentropy(conv, out["ctcvr"]))
        loss = tf.reduce_mean(loss) + tf.add_n(model.losses or [tf.constant(0.0)])
    grads = tape.gradient(loss, model.trainable_variables)
    dead = [v.name for v, g in zip(model.trainable_variables, grads)
            if g is None or float(tf.reduce_sum(tf.abs(tf.convert_to_tensor(g)))) == 0.0]
    assert not dead, f"no gradient reaches {dead}"


def test_save_load_round_trip_serves_identical_predictions_without_custom_code(named_model, tmp_path):
    _, model = named_model
    x = batch(64, seed=3)
    before = model.predict(x, verbose=0)
    model.save(str(tmp_path / "m"), save_format="tf")
    after = keras.models.load_model(str(tmp_path / "m")).predict(x, verbose=0)
    served = tf.saved_model.load(str(tmp_path / "m")).signatures["serving_default"](
        **{k: tf.constant(v) for k, v in x.items()})
    for head in ("ctr", "cvr", "ctcvr"):
        np.testing.assert_array_equal(before[head], after[head])
        np.testing.assert_allclose(before[head], served[head].numpy(), rtol=1e-6)


@pytest.mark.parametrize("gate_name", ["gate_ctr", "gate_cvr"])
def test_mmoe_gates_are_distributions_over_experts(gate_name):
    tf.keras.utils.set_random_seed(1)
    model = build_model("mmoe", FEATURES, SMALL["mmoe"])
    gates = keras.Model(model.inputs, model.get_layer(gate_name).output).predict(batch(), verbose=0)
    assert gates.shape == (256, 3) and np.all(gates > 0)
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, rtol=1e-5)


def test_omoe_has_one_gate_shared_by_both_tasks():
    model = build_model("omoe", FEATURES, SMALL["omoe"])
    assert [layer.name for layer in model.layers if isinstance(layer, Gate)] == ["gate"]


def test_cgc_task_and_shared_gates_are_distributions():
    cgc = CGC(num_tasks=2, specific_expert_num=2, shared_expert_num=1, expert_dnn_hidden_units=[8])
    x = tf.random.normal((32, 5))
    outputs, gates = cgc([x, x, x], return_gates=True)
    assert len(outputs) == 3 and [g.shape[-1] for g in gates] == [3, 3, 5]
    for g in gates:
        np.testing.assert_allclose(g.numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_unknown_model_and_unknown_parameter_are_rejected():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nope", FEATURES, {})
    with pytest.raises(ValueError, match="does not take \\['num_experts'\\]"):
        build_model("esmm", FEATURES, {"num_experts": 4})


def test_experts_are_independent_networks_each_initialised_as_its_own_dense_stack():
    """Stacked weights, but expert i's output depends only on expert i's kernels, and each expert's
    kernel has one Dense layer's Glorot scale (fan-in and fan-out of one expert, not of the stack)."""
    tf.keras.utils.set_random_seed(4)
    experts = Experts(4, [64, 32])
    x = tf.random.normal((16, 40))
    out = experts(x).numpy()
    assert out.shape == (16, 4, 32)
    first = experts.kernels[0].numpy().reshape(40, 4, 64)
    limit = np.sqrt(6 / (40 + 64))
    assert np.abs(first).max() <= limit and np.abs(first).max() > 0.9 * limit
    assert not np.allclose(first[:, 0], first[:, 1])  # distinct draws per expert
    experts.kernels[1].assign(tf.tensor_scatter_nd_update(experts.kernels[1], [[2]], tf.zeros((1, 64, 32))))
    changed = experts(x).numpy()
    np.testing.assert_array_equal(changed[:, [0, 1, 3]], out[:, [0, 1, 3]])
    np.testing.assert_array_equal(changed[:, 2], np.maximum(experts.biases[1].numpy()[2], 0) * np.ones((16, 32)))


def test_initializers_are_chosen_per_model_and_unknown_ones_are_config_errors():
    tf.keras.utils.set_random_seed(1)
    tiny = {"class_name": "RandomNormal", "config": {"stddev": 1e-4}}
    model = build_model("esmm", FEATURES, dict(SMALL["esmm"], initializers={"embedding": tiny, "dense": "zeros"}))
    assert np.abs(model.get_layer("emb_item").embeddings.numpy()).max() < 1e-3
    assert not np.any(model.get_layer("ctr").kernel.numpy())
    default = build_model("esmm", FEATURES, SMALL["esmm"])
    assert np.abs(default.get_layer("emb_item").embeddings.numpy()).max() > 0.01  # Keras' U(-0.05, 0.05)
    with pytest.raises(ValueError, match="initializers.dense: 'glorot_sideways' is not a Keras initializer"):
        build_model("esmm", FEATURES, dict(SMALL["esmm"], initializers={"dense": "glorot_sideways"}))
    with pytest.raises(ValueError, match="unknown keys \\['bias'\\]"):
        build_model("esmm", FEATURES, dict(SMALL["esmm"], initializers={"bias": "zeros"}))


def test_one_expert_computes_its_dense_stack():
    """The single-expert shortcut (PLE's task experts) is the same function as a Dense stack."""
    tf.keras.utils.set_random_seed(2)
    experts = Experts(1, [8, 4])
    x = tf.random.normal((5, 6))
    experts(x)
    for b in experts.biases:
        b.assign(tf.random.normal(b.shape))
    out = experts(x).numpy()
    k0, k1 = experts.kernels[0].numpy(), experts.kernels[1].numpy()[0]
    b0, b1 = experts.biases[0].numpy()[0], experts.biases[1].numpy()[0]
    expected = np.maximum(np.maximum(x.numpy() @ k0 + b0, 0) @ k1 + b1, 0)
    assert out.shape == (5, 1, 4)
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["esmm", "transfer"])
def test_batch_scoped_embedding_penalty_touches_only_the_rows_looked_up(name, tmp_path):
    """l2_embedding_scope batch: λ·Σ‖w_j‖² over the batch's distinct ids, a sparse gradient, and a model
    that saves and reloads with it; the table scope penalises (and moves) every row."""
    tf.keras.utils.set_random_seed(1)
    x = batch(64, seed=4)
    l2 = 0.1
    sparse = build_model(name, FEATURES, dict(SMALL[name], l2_embedding=l2, l2_embedding_scope="batch"))
    dense = build_model(name, FEATURES, dict(SMALL[name], l2_embedding=l2))
    table = {"esmm": lambda m: m.get_layer("emb_item").embeddings,
             "transfer": lambda m: m.get_layer("emb_item")._shared.embeddings}[name]
    for model, scope in ((sparse, "batch"), (dense, "table")):
        with tf.GradientTape() as tape:
            model(x, training=True)
            reg = tf.add_n(model.losses)
        grad = tape.gradient(reg, table(model))
        rows = table(model).numpy()
        ids = np.unique(x["item"])
        if scope == "batch":
            assert isinstance(grad, tf.IndexedSlices)
            assert set(np.unique(grad.indices.numpy())) == set(ids)
            if name == "esmm":  # item and scene tables; each distinct id once
                scene_rows = model.get_layer("emb_scene").embeddings.numpy()
                expected = l2 * (np.sum(rows[ids] ** 2) + np.sum(scene_rows[np.unique(x["scene"])] ** 2))
                np.testing.assert_allclose(float(reg), expected, rtol=1e-5)
        else:
            grad = tf.convert_to_tensor(grad).numpy()
            assert np.count_nonzero(np.abs(grad).sum(axis=1)) == len(rows)  # every row, seen or not
    before = sparse.predict(x, verbose=0)
    sparse.save(str(tmp_path / "m"), save_format="tf")
    reloaded = keras.models.load_model(str(tmp_path / "m"))
    np.testing.assert_array_equal(before["ctr"], reloaded.predict(x, verbose=0)["ctr"])
    reloaded(x, training=True)
    assert len(reloaded.losses) == len(sparse.losses) > 0
    with pytest.raises(ValueError, match="l2_embedding_scope must be one of"):
        build_model(name, FEATURES, dict(SMALL[name], l2_embedding=l2, l2_embedding_scope="rows"))


def test_batch_penalty_divides_each_row_by_its_ids_frequency():
    """DIN's mini-batch aware regularisation: λ·Σ_j ‖w_j‖² / n_j, n_j counted over the training rows."""
    from trainer.layers import penalty
    x = batch(64, seed=6)
    data = tf.data.Dataset.from_tensor_slices((x, np.zeros((64, 1)))).batch(10)
    counts = penalty.count_ids(data, ["scene", "item"], {"scene": 5, "item": 100})
    np.testing.assert_array_equal(counts["item"], np.bincount(x["item"].ravel(), minlength=100))
    tf.keras.utils.set_random_seed(1)
    model = build_model("esmm", FEATURES, dict(SMALL["esmm"], l2_embedding=0.1, l2_embedding_scope="batch"),
                        id_counts=counts)
    model(x, training=True)
    expected = 0.0
    for feature in ("scene", "item"):
        rows = model.get_layer(f"emb_{feature}").embeddings.numpy()
        ids = np.unique(x[feature])
        expected += 0.1 * np.sum(np.sum(rows[ids] ** 2, axis=1) / counts[feature][ids])
    np.testing.assert_allclose(float(tf.add_n(model.losses)), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="3 id counts for a table of 100 rows"):
        build_model("esmm", FEATURES, dict(SMALL["esmm"], l2_embedding=0.1, l2_embedding_scope="batch"),
                    id_counts={"item": np.ones(3)})
