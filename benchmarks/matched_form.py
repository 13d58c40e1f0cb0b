"""The matched-form bound: the generator's own model, fitted to the same rows, as a ceiling for the zoo.

    python -m benchmarks.matched_form --impressions 1000000

The oracle scores eval impressions with the true probabilities, which no model
can know: its gap to a trained model mixes two things, what a finite training
window cannot pin down (20k users and 50k items, most seen a handful of times)
and what the model's form gets wrong. This fit separates them. It knows the
generator's functional form (``loggen/world.py``) and the scale of its random
effects, but none of their values, and it sees only the training rows:

    ctr logit = b[scene] + shared + wp[scene]·price + wb[scene]·brand[item's brand]
                + device[user's device] + c·(position − 1)
    shared    = user[u] + item[i] + affinity[user's segment, item's category]
    cvr logit = cb[scene] + r·shared + user2[u] + item2[i] + wp2[scene]·price + wb2[scene]·brand[…]

with price the standardised log price. That is a superset of the generator: the CVR's price and
brand weights and its own-effect scale are free rather than tied to the CTR's. The CTR term
is fitted on every training impression, the CVR term on clicked ones, jointly (they share
``shared`` and ``brand``), by maximum a posteriori: each random-effect block has a Gaussian prior
with the generator's standard deviation (users and items 0.5, affinities 0.7, brands 1.0;
fixed effects 10), the L2 penalty a mixed model would use. L-BFGS on the exact gradient.

What it scores is what a model could reach with the right form on this much data: the
zoo's distance to it is the models' share of the gap, its distance to the oracle the data's.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Dict, List, Tuple

import numpy as np
import pandas as pd

COLUMNS = ("scene", "user_id", "item_id", "user_segment", "item_category", "item_brand", "device")
PRIOR_SD = {"b": 10.0, "cb": 10.0, "wp": 10.0, "wb": 10.0, "wp2": 10.0, "wb2": 10.0, "dev": 10.0, "c": 10.0,
            "r": 10.0, "user": 0.5, "item": 0.5, "user2": 0.5, "item2": 0.5, "affinity": 0.7, "brand": 1.0}


@dataclasses.dataclass
class Rows:
    """Training or eval rows as integer codes (codes are shared between the two: ``encode``)."""
    scene: np.ndarray
    user: np.ndarray
    item: np.ndarray
    cell: np.ndarray    # segment × category
    brand: np.ndarray
    device: np.ndarray
    position: np.ndarray
    price: np.ndarray   # standardised log1p(price)
    click: np.ndarray
    conversion: np.ndarray


def encode(train: pd.DataFrame, evaluate: pd.DataFrame) -> Tuple[Rows, Rows, Dict[str, int]]:
    """Integer codes over the union of both frames: an id seen only at eval time gets a parameter
    that no training row moves, so it stays at its prior mean 0, as it should."""
    both = pd.concat([train[list(COLUMNS)], evaluate[list(COLUMNS)]], ignore_index=True)
    codes = {c: pd.factorize(both[c])[0] for c in COLUMNS}
    sizes = {c: int(codes[c].max()) + 1 for c in COLUMNS}
    n_cat = sizes["item_category"]
    log_price = np.log1p(train["item_price"].to_numpy(float))
    mean, sd = log_price.mean(), log_price.std()

    def rows(frame: pd.DataFrame, at: slice) -> Rows:
        return Rows(scene=codes["scene"][at], user=codes["user_id"][at], item=codes["item_id"][at],
                    cell=codes["user_segment"][at] * n_cat + codes["item_category"][at],
                    brand=codes["item_brand"][at], device=codes["device"][at],
                    position=frame["position"].to_numpy(float) - 1.0,
                    price=(np.log1p(frame["item_price"].to_numpy(float)) - mean) / sd,
                    click=frame["click"].to_numpy(float), conversion=frame["conversion"].to_numpy(float))
    n = len(train)
    sizes["cell"] = sizes["user_segment"] * n_cat
    return rows(train, slice(0, n)), rows(evaluate, slice(n, None)), sizes


def _layout(sizes: Dict[str, int]) -> Dict[str, Tuple[int, int]]:
    shapes = {"b": sizes["scene"], "cb": sizes["scene"], "wp": sizes["scene"], "wb": sizes["scene"],
              "wp2": sizes["scene"], "wb2": sizes["scene"], "dev": sizes["device"], "c": 1, "r": 1,
              "user": sizes["user_id"], "item": sizes["item_id"], "user2": sizes["user_id"],
              "item2": sizes["item_id"], "affinity": sizes["cell"], "brand": sizes["item_brand"]}
    out, at = {}, 0
    for name, n in shapes.items():
        out[name] = (at, at + n)
        at += n
    return out


def _split(theta: np.ndarray, layout) -> Dict[str, np.ndarray]:
    return {k: theta[a:b] for k, (a, b) in layout.items()}


def logits(p: Dict[str, np.ndarray], x: Rows) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ctr logit, cvr logit, shared) for every row."""
    shared = p["user"][x.user] + p["item"][x.item] + p["affinity"][x.cell]
    brand = p["brand"][x.brand]
    ctr = (p["b"][x.scene] + shared + p["wp"][x.scene] * x.price + p["wb"][x.scene] * brand
           + p["dev"][x.device] + p["c"][0] * x.position)
    cvr = (p["cb"][x.scene] + p["r"][0] * shared + p["user2"][x.user] + p["item2"][x.item]
           + p["wp2"][x.scene] * x.price + p["wb2"][x.scene] * brand)
    return ctr, cvr, shared


def objective(theta: np.ndarray, x: Rows, layout) -> Tuple[float, np.ndarray]:
    """Negative log posterior (CTR on every row, CVR on clicked rows) and its gradient."""
    p = _split(theta, layout)
    z1, z2, shared = logits(p, x)
    clicked = x.click > 0
    loss = float(np.sum(np.logaddexp(0.0, z1) - x.click * z1)
                 + np.sum((np.logaddexp(0.0, z2) - x.conversion * z2)[clicked]))
    r1 = 1.0 / (1.0 + np.exp(-z1)) - x.click
    r2 = np.where(clicked, 1.0 / (1.0 + np.exp(-z2)) - x.conversion, 0.0)
    g = {k: np.zeros_like(v) for k, v in p.items()}

    def add(name, index, weights):
        g[name] += np.bincount(index, weights, minlength=len(g[name]))
    add("b", x.scene, r1)
    add("cb", x.scene, r2)
    through_shared = r1 + p["r"][0] * r2
    add("user", x.user, through_shared)
    add("item", x.item, through_shared)
    add("affinity", x.cell, through_shared)
    add("user2", x.user, r2)
    add("item2", x.item, r2)
    add("wp", x.scene, r1 * x.price)
    add("wp2", x.scene, r2 * x.price)
    brand = p["brand"][x.brand]
    add("wb", x.scene, r1 * brand)
    add("wb2", x.scene, r2 * brand)
    add("brand", x.brand, r1 * p["wb"][x.scene] + r2 * p["wb2"][x.scene])
    add("dev", x.device, r1)
    g["c"][0] += float(np.dot(r1, x.position))
    g["r"][0] += float(np.dot(r2, shared))
    for name, v in p.items():
        inv_var = 1.0 / PRIOR_SD[name] ** 2
        loss += 0.5 * inv_var * float(np.dot(v, v))
        g[name] += inv_var * v
    return loss, np.concatenate([g[k] for k in layout])


def fit(x: Rows, sizes: Dict[str, int], max_iter: int = 500) -> Dict[str, np.ndarray]:
    from scipy.optimize import minimize
    layout = _layout(sizes)
    theta = np.zeros(max(b for _, b in layout.values()))
    start = _split(theta, layout)  # views: brand weights start off zero so the brand effects get a gradient
    start["wb"][:] = start["wb2"][:] = 0.1
    start["b"][:] = start["cb"][:] = -2.5
    result = minimize(objective, theta, args=(x, layout), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "maxcor": 20})
    return _split(result.x, layout)


def predict(p: Dict[str, np.ndarray], x: Rows) -> Dict[str, np.ndarray]:
    z1, z2, _ = logits(p, x)
    ctr, cvr = 1.0 / (1.0 + np.exp(-z1)), 1.0 / (1.0 + np.exp(-z2))
    return {"ctr": ctr, "cvr": cvr, "ctcvr": ctr * cvr}


def read_examples(files: List[str]) -> pd.DataFrame:
    """The raw columns the bound needs (and impression_id to align with other scorers), in file order."""
    import tensorflow as tf
    spec = {c: tf.io.FixedLenFeature([], tf.string) for c in COLUMNS + ("impression_id",)}
    spec.update(position=tf.io.FixedLenFeature([], tf.int64), item_price=tf.io.FixedLenFeature([], tf.float32),
                click=tf.io.FixedLenFeature([], tf.int64), conversion=tf.io.FixedLenFeature([], tf.int64))
    cols: Dict[str, list] = {k: [] for k in spec}
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(16384):
        parsed = tf.io.parse_example(batch, spec)
        for k in spec:
            cols[k].append(parsed[k].numpy())
    frame = pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()})
    for c in COLUMNS + ("impression_id",):
        frame[c] = frame[c].str.decode("utf-8")
    return frame


def bound(train_files: List[str], eval_frame: pd.DataFrame, eval_files: List[str]) -> Dict[str, np.ndarray]:
    """Matched-form predictions for ``eval_frame``'s rows, in its order."""
    import tensorflow as tf
    train = read_examples([f for pattern in train_files for f in tf.io.gfile.glob(pattern)])
    evaluate = read_examples(eval_files).set_index("impression_id").loc[eval_frame["impression_id"]].reset_index()
    x_train, x_eval, sizes = encode(train, evaluate)
    return predict(fit(x_train, sizes), x_eval)


def main() -> None:
    from benchmarks.generated_day import aucs, oracle, prepare
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impressions", type=int, default=1_000_000)
    ap.add_argument("--correlation", type=float, default=0.6)
    ap.add_argument("--workdir", default="/tmp/model-quality")
    args = ap.parse_args()
    prep = prepare(args.workdir, args.correlation, args.impressions)
    orc, fitted = oracle(prep.eval_frame), aucs(prep.eval_frame, bound(prep.train_files, prep.eval_frame,
                                                                        prep.eval_files))
    print(f"machine: {os.cpu_count()} cores; {args.impressions:,} impressions")
    print("| slice | scorer | ctr | cvr (clicked) | cvr (entire) | ctcvr |\n|---|---|---|---|---|---|")
    for s in orc:
        for name, res in (("oracle", orc), ("matched form", fitted)):
            print(f"| {s} | {name} | " + " | ".join(f"{res[s][h]:.4f}" for h in
                                                     ("ctr", "cvr_clicked", "cvr_entire", "ctcvr")) + " |")


if __name__ == "__main__":
    main()
