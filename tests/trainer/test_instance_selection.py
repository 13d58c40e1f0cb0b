"""Instance-based selective transfer on toy data where the right answer is known."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from schemas import Feature
from trainer import instance_selection as sel
from trainer.balancing import MultiTaskModel
from trainer.features import InputFeature
from trainer.models import build_model

FEATURES = [
    InputFeature(Feature("scene", "scene", embedding_dim=2), 2, ("main", "small")),
    InputFeature(Feature("c", "categorical", embedding_dim=4), 10),
    InputFeature(Feature("g", "categorical", embedding_dim=2), 2),
    InputFeature(Feature("x", "numeric"), 0),
]
HEADS = ["ctr"]
MAIN, SMALL = 0, 1


def rows(rng, n, scene, categories, flip=lambda g: np.zeros_like(g, bool), slope=3.0):
    """n rows: c drawn from ``categories``, shard g in {0, 1}, x ~ N(0, 1), click ~ σ(slope·x), the
    click flipped where ``flip(g)``."""
    x = rng.normal(size=n)
    g = rng.integers(0, 2, n)
    click = (rng.random(n) < 1 / (1 + np.exp(-slope * x))).astype(np.float32)
    click = np.where(flip(g), 1 - click, click)
    col = lambda v, t: np.asarray(v, t).reshape(-1, 1)  # noqa: E731
    return sel.Pool({"scene": col(np.full(n, scene), np.int64), "c": col(rng.choice(categories, n), np.int64),
                     "g": col(g, np.int64), "x": col(x, np.float32)}, {"ctr": col(click, np.float32)})


def concat(*pools):
    return sel.Pool({k: np.concatenate([p.x[k] for p in pools]) for k in pools[0].x},
                    {k: np.concatenate([p.y[k] for p in pools]) for k in pools[0].y})


def make_model():
    model = MultiTaskModel(build_model("esmm", FEATURES, {"tower_dnn_hidden_units": [16]}), {"ctr": 1.0})
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    return model


def learn(source, target, **overrides):
    chosen = dict(sel.DEFAULTS, target_scenes=["small"], batch_size=32, episodes=4, learning_rate=0.01,
                  policy_hidden_units=[16], discriminator_hidden_units=[16], **overrides)
    learner = sel.SelectionLearner(FEATURES, HEADS, "scene", SMALL, make_model, chosen, seed=0)
    return learner, learner.learn(source, target, progress=lambda line: None)


@pytest.fixture(scope="module")
def look_alike():
    """Half of the source looks like the target (categories 0-4, the same click model); the other
    half does not (categories 5-9, clicks going the other way)."""
    rng = np.random.default_rng(1)
    like = rows(rng, 2000, MAIN, np.arange(5))
    other = rows(rng, 2000, MAIN, np.arange(5, 10), flip=lambda g: np.ones_like(g, bool))
    target = rows(rng, 2000, SMALL, np.arange(5))
    learner, learned = learn(concat(like, other), target)
    return learner, learned, like, other


def test_source_examples_from_the_target_distribution_are_selected_far_more_often(look_alike):
    learner, learned, like, other = look_alike
    kept_like = np.mean(learner.probabilities(like) > 0.5)
    kept_other = np.mean(learner.probabilities(other) > 0.5)
    assert kept_like > 0.6 and kept_other < 0.15, (kept_like, kept_other)
    assert learned.stats["kept_share_at_tau"] == pytest.approx((kept_like + kept_other) / 2, abs=0.01)


def test_the_discriminator_loses_its_edge_as_selection_improves(look_alike):
    _, learned, _, _ = look_alike
    accuracy = [e["discriminator_accuracy"] for e in learned.stats["episodes"]]
    assert accuracy[0] > 0.6, accuracy  # at first half the selected are plainly not the target's
    assert accuracy[-1] < accuracy[0] - 0.1 and accuracy[-1] < 0.6, accuracy


def test_examples_with_flipped_labels_are_rejected_by_the_delayed_reward():
    """The shard g is spread alike in both scenes, so only the labels differ: shard 1 of the source has
    every click flipped. With the immediate reward switched off, only the drop in the target's
    validation loss can teach the policy to reject it."""
    rng = np.random.default_rng(2)
    source = rows(rng, 4000, MAIN, np.arange(5), flip=lambda g: g == 1)
    target = rows(rng, 2000, SMALL, np.arange(5))
    learner, learned = learn(source, target, immediate_weight=0.0)
    g = source.x["g"].ravel()
    p = learner.probabilities(source)
    kept_good, kept_flipped = np.mean(p[g == 0] > 0.5), np.mean(p[g == 1] > 0.5)
    assert kept_good > 0.8 and kept_flipped < 0.05, (kept_good, kept_flipped)


def _batches():
    rng = np.random.default_rng(3)
    pool = concat(rows(rng, 300, MAIN, np.arange(10)), rows(rng, 100, SMALL, np.arange(5)))
    x, y = pool.take(rng.permutation(len(pool)))
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(64), pool


def test_tau_one_selects_nothing_and_training_data_are_unchanged():
    ds, _ = _batches()
    policy = sel.SelectorNet(FEATURES, HEADS, [8], 4, "scene")
    augmented = ds.map(sel.augment({SMALL: policy}, "scene", MAIN, tau=1.0))
    for (x, y), (ax, ay) in zip(ds, augmented):
        for k in x:
            np.testing.assert_array_equal(x[k].numpy(), ax[k].numpy())
        np.testing.assert_array_equal(y["ctr"].numpy(), ay["ctr"].numpy())


def test_kept_rows_are_appended_as_copies_moved_to_the_target_scene():
    ds, pool = _batches()
    policy = sel.SelectorNet(FEATURES, HEADS, [8], 4, "scene")
    augmented = list(ds.map(sel.augment({SMALL: policy}, "scene", MAIN, tau=0.0)))
    total = sum(int(tf.shape(y["ctr"])[0]) for _, y in augmented)
    assert total == len(pool) + 300  # every main-scene row once more (σ > 0 everywhere)
    x, y = augmented[0]
    n = 64
    scene = x["scene"].numpy().ravel()
    assert (scene[n:] == SMALL).all()
    originals = scene[:n] == MAIN
    np.testing.assert_array_equal(x["x"].numpy()[:n][originals], x["x"].numpy()[n:])
    np.testing.assert_array_equal(y["ctr"].numpy()[:n][originals], y["ctr"].numpy()[n:])


def test_collect_stops_when_every_sample_is_full():
    ds, _ = _batches()
    pools = sel.collect(ds.repeat(), "scene", {MAIN: 50, SMALL: 20})  # would never end without the stop
    assert len(pools[MAIN]) == 50 and len(pools[SMALL]) == 20
    assert (pools[SMALL].x["scene"] == SMALL).all()


def test_discounted_returns():
    np.testing.assert_allclose(sel.discounted([1.0, 0.0, 2.0], 0.5), [1.5, 1.0, 2.0])


@pytest.mark.parametrize("raw, message", [
    ({"target_scenes": ["small"], "tau": 1.5}, "tau must lie in"),
    ({"target_scenes": ["small"], "gamma": 1.0}, "gamma must lie in"),
    ({"target_scenes": ["small"], "taus": 0.5}, "unknown keys \\['taus'\\]"),
    ({"target_scenes": ["small"], "policy": "greedy"}, "policy must be one of"),
    ({"target_scenes": ["small"], "policy": "random"}, "random_rate must give 'small' a share"),
    ({"target_scenes": ["small"], "policy": "random", "random_rate": {"other": 0.1}}, "must give 'small'"),
    ({"target_scenes": ["small"], "policy": "random", "random_rate": 1.2}, "share in \\[0, 1\\]"),
])
def test_bad_settings_are_clear_errors(raw, message):
    with pytest.raises(ValueError, match=message):
        sel.settings({"instance_selection": raw})


def test_no_targets_means_off_and_unknown_scenes_are_named():
    assert sel.settings({}) is None and sel.settings({"instance_selection": {"target_scenes": []}}) is None
    chosen = sel.settings({"instance_selection": {"target_scenes": "small"}})
    assert sel.scene_indices(FEATURES, chosen) == ("scene", MAIN, {"small": SMALL})
    with pytest.raises(ValueError, match=r"\['tiny'\].*\['main', 'small'\]"):
        sel.scene_indices(FEATURES, dict(chosen, target_scenes=["tiny"]))
    with pytest.raises(ValueError, match="cannot be a target"):
        sel.scene_indices(FEATURES, dict(chosen, target_scenes=["main"]))


@pytest.mark.parametrize("policy, rate", [("all", 1.0), ("random", 0.3)])
def test_the_controls_add_source_rows_at_their_rate_and_learn_nothing(policy, rate):
    """Fully-shared transfer (all) and random selection (at the learned policy's rate) are the
    controls the learned policy is measured against (benchmarks/selective_transfer_quality.py)."""
    rng = np.random.default_rng(5)
    pool = concat(rows(rng, 6000, MAIN, np.arange(10)), rows(rng, 200, SMALL, np.arange(5)))
    ds = tf.data.Dataset.from_tensor_slices(pool.take(rng.permutation(len(pool)))).batch(256)
    chosen = sel.settings({"instance_selection": {"target_scenes": ["small"], "policy": policy, "random_rate": rate}})
    augmented, summary = sel.apply(chosen, FEATURES, HEADS, ds, make_model=None, seed=0, progress=lambda s: None)
    stats = summary["targets"]["small"]
    assert summary["policy"] == policy and stats["episodes"] == [] and stats["window_source_rows"] == 6000
    moved = sum(int((x["scene"].numpy() == SMALL).sum()) for x, _ in augmented) - 200
    for kept in (stats["window_kept_rows"], moved):  # the counting pass and a training pass draw apart
        assert abs(kept - rate * 6000) <= 6 * np.sqrt(6000 * rate * (1 - rate)) + 1e-9
