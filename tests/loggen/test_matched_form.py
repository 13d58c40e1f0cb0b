"""The matched-form bound (benchmarks/matched_form.py): its gradient is exact, and on rows drawn
from the generator it recovers the generator's parameters and scores close to the oracle."""
import numpy as np
import pandas as pd
from scipy.optimize import check_grad
from sklearn.metrics import roc_auc_score

from benchmarks import matched_form
from loggen.world import World, WorldConfig


def _rows(world: World, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    scene = rng.choice(len(world.scene_share), n, p=world.scene_share)
    user = rng.choice(world.config.n_users, n, p=world.user_weight)
    item = rng.choice(world.config.n_items, n, p=world.item_weight)
    position = np.minimum(rng.geometric(0.2, n), 50)
    p_ctr, p_cvr = world.true_probabilities(scene, user, item, position)
    click = rng.random(n) < p_ctr
    return pd.DataFrame({
        "scene": np.array(world.config.scene_names)[scene], "user_id": world.user_names[user],
        "item_id": world.item_names[item], "user_segment": world.segment_names[world.user_segment[user]],
        "item_category": world.category_names[world.item_category[item]],
        "item_brand": world.brand_names[world.item_brand[item]], "device": world.device_names[world.user_device[user]],
        "position": position, "item_price": world.item_price[item], "click": click.astype(int),
        "conversion": (click & (rng.random(n) < p_cvr)).astype(int), "p_ctr": p_ctr, "p_ctcvr": p_ctr * p_cvr})


def test_gradient_matches_finite_differences():
    world = World(WorldConfig(n_users=30, n_items=40, n_brands=5, n_categories=4, n_segments=3))
    x, _, sizes = matched_form.encode(_rows(world, 400, 0), _rows(world, 10, 1))
    layout = matched_form._layout(sizes)
    theta = np.random.default_rng(0).normal(0, 0.3, max(b for _, b in layout.values()))
    err = check_grad(lambda t: matched_form.objective(t, x, layout)[0],
                     lambda t: matched_form.objective(t, x, layout)[1], theta, epsilon=1e-6)
    assert err < 1e-3 * np.linalg.norm(matched_form.objective(theta, x, layout)[1])


def test_recovers_the_generator_and_nears_the_oracle():
    world = World(WorldConfig(n_users=300, n_items=500, n_brands=20, n_categories=6, n_segments=3,
                              task_correlation=0.6))
    train, evaluate = _rows(world, 150_000, 0), _rows(world, 40_000, 1)
    x_train, x_eval, sizes = matched_form.encode(train, evaluate)
    params = matched_form.fit(x_train, sizes)
    scenes = list(pd.factorize(pd.concat([train["scene"], evaluate["scene"]]))[1])
    truth = {name: world.scene_params[world.config.scene_names.index(name)] for name in scenes}
    main = scenes.index("main_search")
    # the price weights, up to the price standardisation's scale (shared by every scene)
    ratio = params["wp"] / params["wp"][main]
    expected = np.array([truth[s].price_weight for s in scenes]) / truth["main_search"].price_weight
    np.testing.assert_allclose(ratio, expected, atol=0.35)
    assert 0.3 < params["r"][0] < 0.9  # task correlation 0.6 enters the CVR logit as rho × shared
    assert abs(params["c"][0] + 0.12) < 0.03  # position slope
    pred = matched_form.predict(params, x_eval)
    oracle = roc_auc_score(evaluate["click"], evaluate["p_ctr"])
    assert oracle - 0.01 < roc_auc_score(evaluate["click"], pred["ctr"]) <= oracle + 0.005
    oracle = roc_auc_score(evaluate["conversion"], evaluate["p_ctcvr"])
    assert oracle - 0.02 < roc_auc_score(evaluate["conversion"], pred["ctcvr"]) <= oracle + 0.01
