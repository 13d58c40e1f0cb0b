import datetime as dt
import os

import numpy as np
import pandas as pd
import pytest

from loggen import World, WorldConfig, generate_day, write_days
from loggen.generator import (CART_TRUTH_COLUMNS, MAX_CART_DELAY_DAYS, MAX_CONVERSION_DELAY_DAYS,
                              TRUTH_COLUMNS)
from loggen.world import DEFAULT_SCENES
from schemas import DAY_US, load_raw_schema

DAY = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def big_day():
    return generate_day(World(), DAY, 200_000)


def test_scene_shares_match_config_and_are_skewed(big_day):
    shares = big_day.impressions["scene"].value_counts(normalize=True)
    for name, params in DEFAULT_SCENES.items():
        assert shares[name] == pytest.approx(params.share, abs=0.01)
    assert len(shares) >= 4
    assert shares.max() >= 0.70 and shares.min() <= 0.03


def test_label_rates_follow_true_probabilities(big_day):
    truth = big_day.truth
    n = len(truth)
    clicked = big_day.clicks["impression_id"].nunique()
    converted = big_day.conversions["impression_id"].nunique()
    # Observed rates are Bernoulli draws from the true probabilities: within 4 standard errors.
    exp_ctr = truth["p_ctr"].mean()
    assert clicked / n == pytest.approx(exp_ctr, abs=4 * np.sqrt(exp_ctr / n))
    exp_ctcvr = truth["p_ctcvr"].mean()
    assert converted / n == pytest.approx(exp_ctcvr, abs=4 * np.sqrt(exp_ctcvr / n))
    assert 0.02 < clicked / n < 0.15
    # Every conversion follows a click on the same impression.
    assert set(big_day.conversions["impression_id"]) <= set(big_day.clicks["impression_id"])


def test_scenes_prefer_different_features(big_day):
    """The price-sensitive scene's CTR falls with price much more steeply than the brand-sensitive scene's."""
    imp = big_day.impressions.merge(big_day.truth[["impression_id", "p_ctr"]], on="impression_id")
    logp = np.log1p(imp["item_price"])

    def price_slope(scene):
        m = imp["scene"] == scene
        return np.polyfit(logp[m], imp.loc[m, "p_ctr"], 1)[0]

    assert price_slope("partner_app") < 2 * price_slope("shop_search")
    assert DEFAULT_SCENES["partner_app"].price_weight < DEFAULT_SCENES["shop_search"].price_weight
    assert DEFAULT_SCENES["shop_search"].brand_weight > DEFAULT_SCENES["partner_app"].brand_weight


def test_same_seed_same_logs_other_seed_other_logs():
    a = generate_day(World(WorldConfig(seed=7)), DAY, 5000)
    b = generate_day(World(WorldConfig(seed=7)), DAY, 5000)
    c = generate_day(World(WorldConfig(seed=8)), DAY, 5000)
    pd.testing.assert_frame_equal(a.impressions, b.impressions)
    pd.testing.assert_frame_equal(a.conversions, b.conversions)
    assert not a.impressions["user_id"].equals(c.impressions["user_id"])


def test_a_day_is_identical_alone_or_inside_a_range(tmp_path):
    """Backfills depend on this: day D's partitions do not depend on which days were generated with it."""
    write_days(str(tmp_path / "a"), str(tmp_path / "ta"), DAY, 3, 3000, progress=None)
    write_days(str(tmp_path / "b"), str(tmp_path / "tb"), DAY + dt.timedelta(days=2), 1, 3000, progress=None)
    for log in ("impressions", "clicks", "conversions"):
        part = f"{log}/date={DAY + dt.timedelta(days=2):%Y-%m-%d}/part-00000.parquet"
        left = pd.read_parquet(tmp_path / "a" / part)
        right = pd.read_parquet(tmp_path / "b" / part)
        pd.testing.assert_frame_equal(left, right)


def test_some_conversions_arrive_days_later_and_truth_is_separate(tmp_path):
    write_days(str(tmp_path / "logs"), str(tmp_path / "truth"), DAY, 3, 20000, progress=None)
    conv = pd.read_parquet(tmp_path / "logs" / "conversions" / f"date={DAY + dt.timedelta(days=2):%Y-%m-%d}")
    impression_days = conv["impression_id"].str[:8]
    assert (impression_days != f"{DAY + dt.timedelta(days=2):%Y%m%d}").sum() > 0
    assert not any("p_ctr" in files or "truth" in root for root, _, files in os.walk(tmp_path / "logs"))
    truth = pd.read_parquet(tmp_path / "truth" / f"date={DAY:%Y-%m-%d}")
    assert truth["p_ctr"].between(0, 1).all() and (truth["p_ctcvr"] <= truth["p_ctr"]).all()


def test_columns_match_the_raw_event_schema(tmp_path):
    """Every log of the schema, the optional carts log included (written only by a world with carts)."""
    write_days(str(tmp_path / "logs"), str(tmp_path / "truth"), DAY, 1, 500, WorldConfig(carts=True), progress=None)
    schema = load_raw_schema()
    assert "carts" in schema["logs"]
    for log, body in schema["logs"].items():
        df = pd.read_parquet(tmp_path / "logs" / log / f"date={DAY:%Y-%m-%d}")
        assert list(df.columns) == list(body["fields"]), log


def test_the_default_world_writes_no_carts(tmp_path):
    counts = write_days(str(tmp_path / "logs"), str(tmp_path / "truth"), DAY, 1, 500, progress=None)
    assert set(counts) == {"impressions", "clicks", "conversions"}
    assert not (tmp_path / "logs" / "carts").exists()
    truth = pd.read_parquet(tmp_path / "truth" / f"date={DAY:%Y-%m-%d}")
    assert list(truth.columns) == list(TRUTH_COLUMNS)


@pytest.fixture(scope="module")
def cart_day():
    return generate_day(World(WorldConfig(carts=True)), DAY, 50_000)


def test_carts_leave_impressions_and_clicks_as_they_were(cart_day):
    plain = generate_day(World(), DAY, 50_000)
    pd.testing.assert_frame_equal(plain.impressions, cart_day.impressions)
    pd.testing.assert_frame_equal(plain.clicks, cart_day.clicks)
    pd.testing.assert_frame_equal(plain.truth[["impression_id", "scene", "p_ctr"]],
                                  cart_day.truth[["impression_id", "scene", "p_ctr"]])
    assert plain.carts is None
    assert list(cart_day.truth.columns) == list(TRUTH_COLUMNS + CART_TRUTH_COLUMNS)


def test_carts_follow_clicks_and_conversions_follow_carts(cart_day):
    clicks, carts, conv = cart_day.clicks, cart_day.carts, cart_day.conversions
    assert set(conv["impression_id"]) <= set(carts["impression_id"]) <= set(clicks["impression_id"])
    first_click = clicks.groupby("impression_id")["timestamp"].min()
    first_cart = carts.groupby("impression_id")["timestamp"].min()
    after_click = first_cart - first_click[first_cart.index]
    assert (after_click > 0).all() and (after_click <= MAX_CART_DELAY_DAYS * DAY_US).all()
    after_cart = conv.set_index("impression_id")["timestamp"] - first_cart[conv["impression_id"]].to_numpy()
    assert (after_cart > 0).all()
    after_click = conv.set_index("impression_id")["timestamp"] - first_click[conv["impression_id"]].to_numpy()
    assert (after_click <= MAX_CONVERSION_DELAY_DAYS * DAY_US).all()
    assert len(carts) > carts["impression_id"].nunique()   # some repeat adds to cart


def test_cart_and_purchase_rates_follow_their_true_probabilities(cart_day):
    truth = cart_day.truth.set_index("impression_id")
    assert np.allclose(truth["p_cvr"], truth["p_cart"] * truth["p_purchase"])
    assert np.allclose(truth["p_ctcvr"], truth["p_ctr"] * truth["p_cvr"])
    assert np.allclose(truth["p_ctcart"], truth["p_ctr"] * truth["p_cart"])

    def within(observed, p):   # Bernoulli draws: within 4 standard deviations of the sum of p
        assert abs(observed - p.sum()) <= 4 * np.sqrt((p * (1 - p)).sum()) + 1, (observed, p.sum())

    clicked = truth.loc[cart_day.clicks["impression_id"].unique()]
    carted = truth.loc[cart_day.carts["impression_id"].unique()]
    within(len(carted), clicked["p_cart"])                                 # P(cart | click)
    within(cart_day.conversions["impression_id"].nunique(), carted["p_purchase"])   # P(conversion | cart)
    within(cart_day.carts["impression_id"].nunique(), truth["p_ctcart"])
    assert 0.15 < len(carted) / len(clicked) < 0.6


def test_a_cart_day_is_identical_alone_or_inside_a_range(tmp_path):
    world = WorldConfig(carts=True)
    write_days(str(tmp_path / "a"), str(tmp_path / "ta"), DAY, 2, 3000, world, progress=None)
    write_days(str(tmp_path / "b"), str(tmp_path / "tb"), DAY + dt.timedelta(days=1), 1, 3000, world, progress=None)
    for log in ("impressions", "clicks", "carts", "conversions"):
        part = f"{log}/date={DAY + dt.timedelta(days=1):%Y-%m-%d}/part-00000.parquet"
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a" / part), pd.read_parquet(tmp_path / "b" / part))


def test_invalid_world_config_is_rejected():
    with pytest.raises(ValueError, match="task_correlation"):
        WorldConfig(task_correlation=1.5)
