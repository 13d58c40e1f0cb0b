"""The simulated marketplace: users, items, brands and per-scene behaviour.

The world is drawn once from the base seed, so every generated day shares the
same users and items (a model trained on day D transfers to day D+1), while the
impressions of each day come from a per-day seed.

True probabilities are logistic in a few interpretable signals so that the
published claims (the papers the model docstrings cite) can be tested against them:
- scenes weigh price and brand differently (``price_weight``, ``brand_weight``),
  which is what per-scene feature attention should discover;
- ``task_correlation`` (rho) mixes the CTR signal into the CVR logit, the knob
  the MMoE paper turns on synthetic data;
- ``covariate_shift`` (off by default) makes scenes differ in population too: who the users are,
  which items they see, and for one scene how its users act on the same features
  (``loggen/shift.py``);
- ``carts`` (off by default) makes the funnel three steps: impression -> click -> add to cart ->
  purchase. A clicked impression is carted with p_cart = P(cart | click) and a carted one converts
  with p_purchase = P(conversion | cart); conversions happen only after a cart, so
  P(conversion | click) = p_cart * p_purchase (``true_cart_probabilities``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Tuple

import numpy as np

from loggen.shift import DEFAULT_SHIFT, Population, SceneShift

DEVICES = ("ios", "android", "web")


@dataclasses.dataclass(frozen=True)
class SceneParams:
    share: float          # fraction of the day's impressions
    ctr_bias: float       # base CTR logit
    cvr_bias: float       # base CVR logit
    price_weight: float   # weight on standardised log price (negative: price-sensitive)
    brand_weight: float   # weight on brand strength (positive: brand-sensitive)


DEFAULT_SCENES: Dict[str, SceneParams] = {
    # The main search page: most traffic, moderate sensitivities.
    "main_search": SceneParams(0.75, -2.9, -2.5, -0.3, 0.3),
    # Search inside a shop: shoppers there care about the brand.
    "shop_search": SceneParams(0.15, -2.6, -2.3, -0.1, 1.2),
    # A partner app: bargain hunters, strongly price-sensitive.
    "partner_app": SceneParams(0.08, -3.1, -2.7, -1.2, 0.0),
    # A promotions feed: the smallest scene, price-sensitive and click-happy.
    "promo_feed": SceneParams(0.02, -2.4, -2.9, -0.8, 0.4),
}


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    seed: int = 42
    n_users: int = 20_000
    n_items: int = 50_000
    n_brands: int = 300
    n_categories: int = 50
    n_segments: int = 8
    task_correlation: float = 0.6
    scenes: Tuple[Tuple[str, SceneParams], ...] = tuple(DEFAULT_SCENES.items())
    covariate_shift: bool = False
    shifts: Tuple[Tuple[str, SceneShift], ...] = tuple(DEFAULT_SHIFT.items())
    # With covariate_shift: the low-income segments' extra weight on standardised log price, in every
    # scene, so that a partner_app user behaves like the same user in main_search.
    low_income_price_weight: float = -0.8
    # A three-step funnel (impression -> click -> cart -> conversion) with a `carts` log; off: the
    # two-step world, whose logs and truth stay byte-identical for a seed.
    carts: bool = False
    # With carts: the cart and purchase logits' offsets from the scene's CVR bias (about 30 % of
    # clicks are carted and 30 % of carts bought, so P(conversion | click) stays near today's CVR).
    cart_offset: float = 1.6
    purchase_offset: float = 1.3

    def __post_init__(self):
        if not -1.0 <= self.task_correlation <= 1.0:
            raise ValueError(f"task_correlation must lie in [-1, 1], got {self.task_correlation}")
        total = sum(p.share for _, p in self.scenes)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"scene shares must sum to 1, got {total:.6f}")

    @property
    def scene_names(self) -> List[str]:
        return [n for n, _ in self.scenes]


def _names(prefix: str, n: int) -> np.ndarray:
    return np.array([f"{prefix}{i}" for i in range(n)], dtype=object)


class World:
    """Entities and the true click / conversion model."""

    def __init__(self, config: WorldConfig = WorldConfig()):
        self.config = config
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0]))
        c = config
        self.user_names = _names("u", c.n_users)
        self.item_names = _names("i", c.n_items)
        self.brand_names = _names("b", c.n_brands)
        self.category_names = _names("c", c.n_categories)
        self.segment_names = _names("seg", c.n_segments)
        self.device_names = np.array(DEVICES, dtype=object)

        self.user_segment = rng.integers(0, c.n_segments, c.n_users)
        self.user_device = rng.choice(len(DEVICES), c.n_users, p=[0.45, 0.4, 0.15])
        self.user_ctr_bias = rng.normal(0.0, 0.5, c.n_users)
        self.user_cvr_bias = rng.normal(0.0, 0.5, c.n_users)
        # Heavy-tailed activity: a few users see most impressions.
        self.user_weight = rng.pareto(1.5, c.n_users) + 1.0
        self.user_weight /= self.user_weight.sum()

        self.item_category = rng.integers(0, c.n_categories, c.n_items)
        self.item_brand = rng.integers(0, c.n_brands, c.n_items)
        category_price = rng.normal(3.5, 0.8, c.n_categories)
        self.item_price = np.round(np.exp(category_price[self.item_category] + rng.normal(0, 0.5, c.n_items)), 2)
        log_price = np.log1p(self.item_price)
        self.item_price_z = (log_price - log_price.mean()) / log_price.std()
        self.item_ctr_quality = rng.normal(0.0, 0.5, c.n_items)
        self.item_cvr_quality = rng.normal(0.0, 0.5, c.n_items)
        self.item_weight = rng.pareto(1.2, c.n_items) + 1.0
        self.item_weight /= self.item_weight.sum()

        self.brand_strength = rng.normal(0.0, 1.0, c.n_brands)
        self.affinity = rng.normal(0.0, 0.7, (c.n_segments, c.n_categories))
        self.device_effect = np.array([0.1, 0.0, -0.2])

        self.scene_params = [p for _, p in c.scenes]
        self.scene_share = np.array([p.share for p in self.scene_params])
        # Its own stream, so that the default world's draws are unchanged.
        self.population: Optional[Population] = (
            Population(self, dict(c.shifts), np.random.default_rng(np.random.SeedSequence([c.seed, 2])))
            if c.covariate_shift else None)
        # The cart step's own item effect, from its own stream: the default world's draws are unchanged.
        if c.carts:
            cart_rng = np.random.default_rng(np.random.SeedSequence([c.seed, 3]))
            self.item_cart_quality = cart_rng.normal(0.0, 0.5, c.n_items)

    def _scene_param(self, name: str, scene: np.ndarray) -> np.ndarray:
        return np.array([getattr(p, name) for p in self.scene_params])[scene]

    def _funnel_terms(self, scene: np.ndarray, user: np.ndarray, item: np.ndarray) -> Tuple[np.ndarray, ...]:
        """The per-row terms every step of the funnel draws on: (cvr_bias, price weight, brand weight,
        price z-score, brand strength, the shared click signal), with the covariate-shift
        population's affinities and low-income price weight where the world has one."""
        w_price = self._scene_param("price_weight", scene)
        segment, category = self.user_segment[user], self.item_category[item]
        if self.population is None:
            affinity = self.affinity[segment, category]
        else:
            affinity = np.stack(self.population.affinity)[scene, segment, category]
            w_price = w_price + self.config.low_income_price_weight * (segment < self.population.n_low)
        shared = self.user_ctr_bias[user] + self.item_ctr_quality[item] + affinity
        return (self._scene_param("cvr_bias", scene), w_price, self._scene_param("brand_weight", scene),
                self.item_price_z[item], self.brand_strength[self.item_brand[item]], shared)

    def true_probabilities(self, scene: np.ndarray, user: np.ndarray, item: np.ndarray,
                           position: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Returns (pCTR, pCVR) for index arrays of scene, user, item and position."""
        ctr_bias = self._scene_param("ctr_bias", scene)
        cvr_bias, w_price, w_brand, price_z, brand, shared = self._funnel_terms(scene, user, item)
        own = self.user_cvr_bias[user] + self.item_cvr_quality[item]
        rho = self.config.task_correlation
        ctr_price, cvr_price = w_price * price_z, 1.5 * w_price * price_z
        if self.population is not None:
            offset = np.asarray(self.population.price_offset)[scene]
            ctr_price, cvr_price = ctr_price + offset, cvr_price + 1.5 * offset
        ctr_logit = (ctr_bias + shared + ctr_price + w_brand * brand
                     + self.device_effect[self.user_device[user]] - 0.12 * (position - 1))
        cvr_logit = (cvr_bias + rho * shared + math.sqrt(1.0 - rho * rho) * own
                     + cvr_price + 0.5 * w_brand * brand)
        return _sigmoid(ctr_logit), _sigmoid(cvr_logit)

    def true_cart_probabilities(self, scene: np.ndarray, user: np.ndarray, item: np.ndarray
                                ) -> Tuple[np.ndarray, np.ndarray]:
        """With ``carts``: (p_cart = P(cart | click), p_purchase = P(conversion | cart)).

        Carting follows the item (its own cart quality, price, brand, the CTR signal through rho);
        buying a carted item follows the user (their CVR bias) and the item's CVR quality."""
        if not self.config.carts:
            raise ValueError("true_cart_probabilities needs WorldConfig(carts=True)")
        cvr_bias, w_price, w_brand, price_z, brand, shared = self._funnel_terms(scene, user, item)
        rho = self.config.task_correlation
        cart_logit = (cvr_bias + self.config.cart_offset + rho * shared
                      + math.sqrt(1.0 - rho * rho) * self.item_cart_quality[item]
                      + w_price * price_z + 0.5 * w_brand * brand)
        purchase_logit = (cvr_bias + self.config.purchase_offset + self.user_cvr_bias[user]
                          + self.item_cvr_quality[item] + 0.5 * w_price * price_z)
        return _sigmoid(cart_logit), _sigmoid(purchase_logit)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
