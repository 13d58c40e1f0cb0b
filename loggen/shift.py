"""Scenes that differ in population: the generator's covariate-shift option (``WorldConfig.covariate_shift``).

In the default world every scene draws its users and items from the same distribution; scenes differ
only in biases and in price/brand weights. The multi-domain transfer source's scenes differ in who
the users are: the main search serves everyone, a small cheap-goods app serves mostly low-spending
users who also exist in the main scene. Instance-based selective transfer (pick main-scene examples
that look like a small scene's) only has something to find when that is so. With the option on:

- **user mixtures per scene**: the first ``n_segments // 4`` segments are the low-income segments;
  each scene fixes their share of its impressions (``low_share``: 10 % of main_search, 80 % of
  partner_app), the other segments sharing the rest equally, and within a segment users are drawn by
  activity as before;
- **partly overlapping item pools**: a scene shows all items, or only the cheapest ``pool_fraction``
  of them (by price), the items of a ``pool_fraction`` of the brands, or a random ``pool_fraction``;
  every pool is a subset of the main scene's, so pools overlap in part;
- **a scene whose target depends on features differently for the same users**: its segment ×
  category affinity is ``sqrt(1 - a²)·A + a·A_scene`` with its own ``A_scene`` (``affinity_own`` = a).

Everything is drawn from a random stream of its own, so the default world is unchanged, and
``describe`` measures how far each scene's population is from the main scene's.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List

import numpy as np

World = Any  # loggen.world.World, which imports this module (no import back: no cycle)

POOLS = ("all", "cheap", "brands", "random")


@dataclasses.dataclass(frozen=True)
class SceneShift:
    low_share: float             # share of the scene's impressions from low-income segments
    pool: str = "all"            # which items the scene shows: all | cheap | brands | random
    pool_fraction: float = 1.0   # the fraction of items (cheap, random) or brands (brands) in the pool
    affinity_own: float = 0.0    # weight a of the scene's own segment x category affinity

    def __post_init__(self):
        if not 0.0 < self.low_share < 1.0:
            raise ValueError(f"low_share must lie in (0, 1), got {self.low_share}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {list(POOLS)}, got {self.pool!r}")
        if not 0.0 < self.pool_fraction <= 1.0:
            raise ValueError(f"pool_fraction must lie in (0, 1], got {self.pool_fraction}")
        if not 0.0 <= self.affinity_own <= 1.0:
            raise ValueError(f"affinity_own must lie in [0, 1], got {self.affinity_own}")


DEFAULT_SHIFT: Dict[str, SceneShift] = {
    "main_search": SceneShift(low_share=0.10),
    "shop_search": SceneShift(low_share=0.15, pool="brands", pool_fraction=0.5),
    "partner_app": SceneShift(low_share=0.80, pool="cheap", pool_fraction=0.4),
    "promo_feed": SceneShift(low_share=0.50, pool="random", pool_fraction=0.3, affinity_own=0.7),
}


class Population:
    """Per scene: who is shown (user probabilities), what is shown (item probabilities) and the
    segment x category affinity that scene's users act on."""

    def __init__(self, world: World, shifts: Dict[str, SceneShift], rng: np.random.Generator):
        c = world.config
        missing = [s for s in c.scene_names if s not in shifts]
        if missing:
            raise ValueError(f"covariate_shift has no SceneShift for scenes {missing}")
        self.n_low = max(1, c.n_segments // 4)
        if self.n_low >= c.n_segments:
            raise ValueError("covariate_shift needs at least 2 user segments")
        self.shifts = [shifts[s] for s in c.scene_names]
        self.user_p: List[np.ndarray] = []
        self.item_p: List[np.ndarray] = []
        self.affinity: List[np.ndarray] = []
        segment_weight = np.bincount(world.user_segment, weights=world.user_weight, minlength=c.n_segments)
        self.price_offset: List[float] = []
        mean_price_z = float(world.item_weight @ world.item_price_z)
        for shift, scene in zip(self.shifts, world.scene_params):
            shares = self.segment_shares(shift, c.n_segments)
            share_of_user = np.where(segment_weight > 0, shares / np.maximum(segment_weight, 1e-300), 0.0)
            p = world.user_weight * share_of_user[world.user_segment]
            self.user_p.append(p / p.sum())
            mask = self._pool(world, shift, rng)
            q = world.item_weight * mask
            self.item_p.append(q / q.sum())
            own = rng.normal(0.0, 0.7, world.affinity.shape)
            a = shift.affinity_own
            self.affinity.append(math.sqrt(1.0 - a * a) * world.affinity + a * own)
            # A cheap pool and price-sensitive users would lift the scene's whole price term; this
            # offset (on that term, so it is 1.5x in the CVR logit too) keeps its mean where the
            # default world has it, so base rates stay comparable and only the populations differ.
            weight = scene.price_weight + c.low_income_price_weight * float(shares[:self.n_low].sum())
            self.price_offset.append(scene.price_weight * mean_price_z - weight * float(self.item_p[-1] @ world.item_price_z))

    def segment_shares(self, shift: SceneShift, n_segments: int) -> np.ndarray:
        low = np.full(self.n_low, shift.low_share / self.n_low)
        rest = np.full(n_segments - self.n_low, (1.0 - shift.low_share) / (n_segments - self.n_low))
        return np.concatenate([low, rest])

    @staticmethod
    def _pool(world: World, shift: SceneShift, rng: np.random.Generator) -> np.ndarray:
        n = len(world.item_names)
        if shift.pool == "all":
            return np.ones(n)
        if shift.pool == "cheap":
            return (world.item_price <= np.quantile(world.item_price, shift.pool_fraction)).astype(float)
        if shift.pool == "brands":
            brands = rng.random(len(world.brand_names)) < shift.pool_fraction
            return brands[world.item_brand].astype(float)
        return (rng.random(n) < shift.pool_fraction).astype(float)

    def describe(self, world: World) -> List[Dict[str, float]]:
        """Per scene, distances from the main scene (the first): total variation of the segment
        shares and of the item distribution, the share of items in the pool, and a."""
        c = world.config
        main_items = self.item_p[0]
        main_segments = self.segment_shares(self.shifts[0], c.n_segments)
        out = []
        for name, shift, items in zip(c.scene_names, self.shifts, self.item_p):
            out.append({"scene": name,
                        "segment_tv": 0.5 * float(np.abs(self.segment_shares(shift, c.n_segments) - main_segments).sum()),
                        "item_tv": 0.5 * float(np.abs(items - main_items).sum()),
                        "item_pool": float(np.mean(items > 0)),
                        "low_share": shift.low_share,
                        "affinity_own": shift.affinity_own})
        return out


def describe_lines(world: World) -> List[str]:
    """What ``rankpipe generate-logs`` prints about the scenes' populations."""
    if world.population is None:
        return ["[loggen] scenes share one population (covariate_shift off)"]
    lines = ["[loggen] covariate shift: each scene against main scene "
             f"{world.config.scene_names[0]} (TV = total-variation distance)"]
    for row in world.population.describe(world):
        lines.append(f"[loggen]   {row['scene']:<14} low-income share {row['low_share']:.0%}, segment TV "
                     f"{row['segment_tv']:.2f}, item TV {row['item_tv']:.2f}, item pool {row['item_pool']:.0%} "
                     f"of items, own affinity weight {row['affinity_own']:.1f}")
    return lines
