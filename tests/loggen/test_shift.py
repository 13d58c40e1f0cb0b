"""The generator's covariate-shift option: scenes differ in who is shown what, and one scene in how
its users act on the same features."""
import datetime as dt

import numpy as np
import pytest

from loggen import World, WorldConfig, generate_day
from loggen.shift import DEFAULT_SHIFT, SceneShift, describe_lines

DAY = dt.date(2026, 11, 20)
LOW = ("seg0", "seg1")  # n_segments 8: the first 8 // 4 segments are the low-income ones


@pytest.fixture(scope="module")
def shifted():
    world = World(WorldConfig(covariate_shift=True))
    day = generate_day(world, DAY, 60_000)
    return world, day.impressions.merge(day.truth[["impression_id", "p_ctr", "p_cvr"]], on="impression_id")


def test_each_scene_draws_its_own_user_mixture(shifted):
    _, imp = shifted
    low = imp.assign(low=imp["user_segment"].isin(LOW)).groupby("scene")["low"].mean()
    for scene, shift in DEFAULT_SHIFT.items():
        n = int((imp["scene"] == scene).sum())
        assert low[scene] == pytest.approx(shift.low_share, abs=4 * np.sqrt(0.25 / n) + 0.01), scene
    assert low["partner_app"] > 0.7 and low["main_search"] < 0.15


def test_item_pools_overlap_in_part(shifted):
    world, imp = shifted
    cheap = np.quantile(world.item_price, DEFAULT_SHIFT["partner_app"].pool_fraction)
    assert imp.loc[imp["scene"] == "partner_app", "item_price"].max() <= cheap
    main = set(imp.loc[imp["scene"] == "main_search", "item_id"])
    for scene in ("shop_search", "partner_app", "promo_feed"):
        own = set(imp.loc[imp["scene"] == scene, "item_id"])
        shared = len(own & main) / len(own)
        assert 0.2 < shared < 1.0, (scene, shared)  # partly, not wholly, what the main scene shows
    pool = world.population.item_p[list(DEFAULT_SHIFT).index("promo_feed")] > 0
    assert pool.mean() == pytest.approx(DEFAULT_SHIFT["promo_feed"].pool_fraction, abs=0.02)


def test_only_the_scene_with_its_own_affinity_acts_differently_on_the_same_features():
    world = World(WorldConfig(covariate_shift=True))
    base = world.affinity.ravel()
    for index, scene in enumerate(world.config.scene_names):
        corr = np.corrcoef(base, world.population.affinity[index].ravel())[0, 1]
        if DEFAULT_SHIFT[scene].affinity_own == 0:
            assert corr == pytest.approx(1.0)
        else:
            assert corr < 0.8, corr
    # The same user and item, shown in main_search and in promo_feed: different affinities, so the
    # CTR logits differ by more than the scenes' constant terms.
    n = 2000
    rng = np.random.default_rng(0)
    user, item = rng.integers(0, world.config.n_users, n), rng.integers(0, world.config.n_items, n)
    ones = np.ones(n, int)
    main, _ = world.true_probabilities(0 * ones, user, item, ones)
    promo, _ = world.true_probabilities(3 * ones, user, item, ones)
    shop, _ = world.true_probabilities(1 * ones, user, item, ones)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    brand = world.brand_strength[world.item_brand[item]]
    price = world.item_price_z[item]
    explained = np.column_stack([ones, brand, price])

    def unexplained(a, b):  # what remains of b - a after the scenes' bias, brand and price terms
        d = logit(b) - logit(a)
        coef, *_ = np.linalg.lstsq(explained, d, rcond=None)
        return float(np.std(d - explained @ coef))
    assert unexplained(main, shop) < 1e-6
    assert unexplained(main, promo) > 0.3


def test_base_rates_stay_comparable_to_the_default_world(shifted):
    _, imp = shifted
    rates = imp.groupby("scene")[["p_ctr", "p_cvr"]].mean()
    assert rates["p_ctr"].between(0.02, 0.2).all() and rates["p_cvr"].between(0.03, 0.3).all()


def test_describe_measures_each_scene_against_the_main_scene():
    world = World(WorldConfig(covariate_shift=True))
    rows = {r["scene"]: r for r in world.population.describe(world)}
    # 80 % low-income against 10 %: TV = |0.8 - 0.1| (the other segments share the difference).
    assert rows["partner_app"]["segment_tv"] == pytest.approx(0.70)
    assert rows["main_search"]["segment_tv"] == 0 and rows["main_search"]["item_tv"] == 0
    assert rows["partner_app"]["item_tv"] > 0.3
    text = "\n".join(describe_lines(world))
    assert "partner_app" in text and "segment TV 0.70" in text
    assert "covariate_shift off" in describe_lines(World())[0]


def test_off_by_default_and_the_default_world_draws_nothing_for_it():
    assert World().population is None
    a = generate_day(World(), DAY, 3000)
    b = generate_day(World(WorldConfig(shifts=(("main_search", SceneShift(0.5)),))), DAY, 3000)
    assert a.impressions.equals(b.impressions) and a.truth.equals(b.truth)


@pytest.mark.parametrize("kwargs, message", [
    (dict(low_share=1.0), "low_share"),
    (dict(low_share=0.5, pool="expensive"), "pool must be one of"),
    (dict(low_share=0.5, pool_fraction=0.0), "pool_fraction"),
    (dict(low_share=0.5, affinity_own=1.5), "affinity_own"),
])
def test_bad_scene_shift_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SceneShift(**kwargs)


def test_a_scene_without_a_shift_is_named():
    with pytest.raises(ValueError, match="promo_feed"):
        World(WorldConfig(covariate_shift=True, shifts=tuple((k, v) for k, v in DEFAULT_SHIFT.items()
                                                             if k != "promo_feed")))


def test_generate_logs_prints_the_distances_and_writes_shifted_logs(tmp_path, capsys):
    import pandas as pd

    from pipeline_components import cli
    assert cli.main(["--home", str(tmp_path), "generate-logs", "--start", str(DAY), "--days", "1",
                     "--impressions", "4000", "--covariate-shift"]) == 0
    out = capsys.readouterr().out
    assert "partner_app" in out and "segment TV 0.70" in out
    imp = pd.read_parquet(tmp_path / "logs" / "impressions" / f"date={DAY}")
    partner = imp[imp["scene"] == "partner_app"]
    assert partner["user_segment"].isin(LOW).mean() > 0.6
