"""Every model of the zoo on funnels other than click -> conversion: a three-step funnel with a
regression task, and two independent tasks. Heads follow the declared tasks; each entire-space head
is the product down the chain and never exceeds its parent's; the losses of the configured heads
reach every variable; a conditional head is trained on its given rows only."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from schemas.tasks import parse_tasks
from tests.trainer.model_fixtures import FEATURES, SMALL, batch
from trainer.balancing import MultiTaskModel, given_key
from trainer.models import MODELS, build_model

THREE_STEPS = parse_tasks([
    {"name": "ctr", "label": "click"},
    {"name": "cart", "label": "cart", "after": "ctr"},
    {"name": "purchase", "label": "conversion", "after": "cart"},
    {"name": "dwell", "label": "dwell_seconds", "after": "ctr", "type": "regression"},
])
INDEPENDENT = parse_tasks([{"name": "income", "label": "income"}, {"name": "marital", "label": "never_married"}])


@pytest.fixture(scope="module", params=sorted(MODELS))
def three_step_model(request):
    tf.keras.utils.set_random_seed(1)
    return request.param, build_model(request.param, FEATURES, SMALL[request.param], tasks=THREE_STEPS)


def _labels(n, seed=0):
    rng = np.random.default_rng(seed)
    click = (rng.random((n, 1)) < 0.4).astype("float32")
    cart = click * (rng.random((n, 1)) < 0.5).astype("float32")
    conversion = cart * (rng.random((n, 1)) < 0.5).astype("float32")
    return click, cart, conversion, (click * rng.exponential(30.0, (n, 1))).astype("float32")


def test_heads_follow_the_declared_funnel_and_every_entire_space_head_stays_under_its_parent(three_step_model):
    name, model = three_step_model
    out = model.predict(batch(), verbose=0)
    assert set(out) == {"ctr", "cart", "cart_es", "purchase", "purchase_es", "dwell"}
    for head, v in out.items():
        assert v.shape == (256, 1) and np.all(np.isfinite(v)), head
        if head != "dwell":
            assert np.all((v >= 0) & (v <= 1)), head
    assert np.all(out["cart_es"] <= out["ctr"] + 1e-7) and np.all(out["purchase_es"] <= out["cart_es"] + 1e-7)
    # the chain: entire space = parent's entire space x conditional (AITM predicts the entire space
    # and derives the conditional, so there the product holds up to the division's rounding)
    np.testing.assert_allclose(out["cart_es"], out["ctr"] * out["cart"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out["purchase_es"], out["cart_es"] * out["purchase"], rtol=1e-4, atol=1e-7)
    assert np.ptp(out["dwell"]) > 0  # a regression head is not squashed into a constant


def test_the_entire_space_and_regression_losses_reach_every_variable(three_step_model):
    _, model = three_step_model
    click, cart, conversion, dwell = _labels(512, seed=5)
    with tf.GradientTape() as tape:
        out = model(batch(512, seed=2), training=True)
        bce = keras.losses.binary_crossentropy
        loss = (bce(click, out["ctr"]) + bce(cart, out["cart_es"]) + bce(conversion, out["purchase_es"])
                + tf.reshape(click, [-1]) * tf.reshape(tf.square(dwell - out["dwell"]), [-1]))
        loss = tf.reduce_mean(loss) + tf.add_n(model.losses or [tf.constant(0.0)])
    grads = tape.gradient(loss, model.trainable_variables)
    dead = [v.name for v, g in zip(model.trainable_variables, grads)
            if g is None or float(tf.reduce_sum(tf.abs(tf.convert_to_tensor(g)))) == 0.0]
    assert not dead, f"no gradient reaches {dead}"


@pytest.mark.parametrize("name", ["shared_bottom", "mmoe", "cross_stitch", "aitm", "star"])
def test_independent_tasks_have_one_head_each_and_no_product(name):
    tf.keras.utils.set_random_seed(1)
    out = build_model(name, FEATURES, SMALL[name], tasks=INDEPENDENT).predict(batch(64), verbose=0)
    assert set(out) == {"income", "marital"}


def test_a_conditional_head_is_trained_on_the_rows_where_its_parent_happened():
    """The loss of ``cart`` (given a click) ignores unclicked rows whatever their label says, and is
    averaged over every row (the chain's likelihood factor); ``cart_es`` counts every row."""
    tf.keras.utils.set_random_seed(3)
    model = build_model("bayes_chain", FEATURES, SMALL["bayes_chain"], tasks=THREE_STEPS)
    heads = THREE_STEPS.head_config()
    trainer = MultiTaskModel(model, {"cart": 1.0, "cart_es": 1.0, "dwell": 1.0}, heads=heads)
    x = batch(128, seed=4)
    out = model(x, training=False)
    click, cart, _, dwell = _labels(128, seed=6)
    noise = np.random.default_rng(7).integers(0, 2, (128, 1)).astype("float32")
    y = {"cart": cart, "cart_es": cart, "dwell": dwell,
         given_key("cart"): click, given_key("dwell"): click}
    scrambled = dict(y, cart=np.where(click > 0, cart, noise), dwell=np.where(click > 0, dwell, 1e6 * noise))
    before = [float(v) for v in trainer._task_losses(y, out)]
    after = [float(v) for v in trainer._task_losses(scrambled, out)]
    assert before[0] == pytest.approx(after[0]) and before[2] == pytest.approx(after[2])
    p = out["cart"].numpy()
    bce = -(cart * np.log(np.clip(p, 1e-7, 1)) + (1 - cart) * np.log(np.clip(1 - p, 1e-7, 1)))
    assert before[0] == pytest.approx(float((click * bce).sum() / 128), rel=1e-4)
    np.testing.assert_allclose(before[2], float((click * (dwell - out["dwell"].numpy()) ** 2).sum() / 128),
                               rtol=1e-4)
    es_scrambled = dict(y, cart_es=np.where(click > 0, cart, 1.0))
    assert float(trainer._task_losses(es_scrambled, out)[1]) != pytest.approx(before[1])


def test_bayes_chain_needs_a_weight_for_every_factor():
    from trainer.models.bayes_chain import check_factor_weights
    with pytest.raises(ValueError, match=r"conditional heads \['purchase', 'dwell'\]"):
        check_factor_weights(THREE_STEPS, {"ctr": 1.0, "cart": 1.0, "purchase_es": 1.0})
    check_factor_weights(THREE_STEPS, {"ctr": 1.0, "cart": 0.5, "purchase": 2.0, "dwell": 0.1})


def test_each_bayes_chain_factor_reads_its_parent_factor():
    """The cart factor changes when the click factor's tower changes; the click factor does not
    change with the cart tower (information flows down the chain only)."""
    tf.keras.utils.set_random_seed(2)
    model = build_model("bayes_chain", FEATURES, SMALL["bayes_chain"], tasks=THREE_STEPS)
    x = batch(64, seed=8)
    before = model.predict(x, verbose=0)
    for layer_name, unchanged, changed in (("cart_tower", ["ctr", "dwell"], ["cart", "purchase"]),
                                          ("ctr_tower", [], ["ctr", "cart", "purchase", "dwell"])):
        layer = model.get_layer(layer_name)
        saved = [w.numpy() for w in layer.weights]
        for w in layer.weights:
            w.assign(w + 0.5)
        after = model.predict(x, verbose=0)
        for head in unchanged:
            np.testing.assert_array_equal(after[head], before[head])
        for head in changed:
            assert np.abs(after[head] - before[head]).max() > 1e-6, (layer_name, head)
        for w, v in zip(layer.weights, saved):
            w.assign(v)
