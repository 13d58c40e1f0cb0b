"""UCI Adult as two tasks (income > 50K, never married), as the MMoE paper's census-income experiments
(Ma et al., KDD 2018) pose them, in the arrays both the project's models and DeepCTR's take.

The data set is small and real: a model that trains unstably shows it across seeds here, where the
generated logs, with their millions of rows, hide it. Categorical columns become integer ids over
a vocabulary of the whole file (id 0 is kept for values never seen, as the Transform graph's OOV
bucket); numeric columns are standardised on the training half (capital gain and loss after
log1p, their long tails otherwise dominate). ``marital-status`` is the second task's label, so it
is not a feature.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Tuple

import numpy as np
import pandas as pd

from configs import REPO_ROOT

DATA = os.path.join(REPO_ROOT, "..", "shared", "datasets", "adult")  # beside the checkout; or --data
CATEGORICAL = ("workclass", "education", "occupation", "relationship", "race", "sex", "native-country")
NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
LOG1P = ("capital-gain", "capital-loss")
TASKS = ("income", "never_married")
EMBEDDING_DIM = 8


@dataclasses.dataclass
class Split:
    """One seed's 50/50 split: inputs keyed by feature name (ids int64, numbers float32, shape (n,))."""
    train_x: Dict[str, np.ndarray]
    train_y: Dict[str, np.ndarray]
    test_x: Dict[str, np.ndarray]
    test_y: Dict[str, np.ndarray]
    cardinality: Dict[str, int]  # categorical feature -> rows of its embedding table


def key(column: str) -> str:
    """Feature names are Keras input names: no dashes."""
    return column.replace("-", "_")


def load(path: str = DATA) -> pd.DataFrame:
    """``adult.data`` (32,561 rows); ``?`` (missing) is kept as its own category."""
    file = os.path.join(path, "adult.data")
    if not os.path.exists(file):
        raise FileNotFoundError(f"{file} not found: the benchmark reads UCI Adult from ../shared/datasets/adult "
                                "(pass --data DIR to read it elsewhere)")
    frame = pd.read_csv(file, skipinitialspace=True)
    frame["classification"] = frame["classification"].str.rstrip(".")
    return frame


def split(frame: pd.DataFrame, seed: int, standardise: bool = True) -> Split:
    """``standardise=False`` feeds numbers as they are in the file (fnlwgt in the hundreds of
    thousands), as a user who skips normalisation would: a trainability stress test."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frame))
    half = len(frame) // 2
    parts = frame.iloc[order[:half]], frame.iloc[order[half:]]
    labels = [{"income": (p["classification"] == ">50K").to_numpy(np.float32),
               "never_married": (p["marital-status"] == "Never-married").to_numpy(np.float32)} for p in parts]
    xs: Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]] = ({}, {})
    cardinality = {}
    for column in CATEGORICAL:
        vocabulary = {v: i + 1 for i, v in enumerate(sorted(frame[column].astype(str).unique()))}
        cardinality[key(column)] = len(vocabulary) + 1
        for x, p in zip(xs, parts):
            x[key(column)] = p[column].astype(str).map(vocabulary).to_numpy(np.int64)
    for column in NUMERIC:
        values = [p[column].to_numpy(np.float64) for p in parts]
        if not standardise:
            for x, v in zip(xs, values):
                x[key(column)] = v.astype(np.float32)
            continue
        if column in LOG1P:
            values = [np.log1p(v) for v in values]
        mean, std = values[0].mean(), values[0].std() or 1.0
        for x, v in zip(xs, values):
            x[key(column)] = ((v - mean) / std).astype(np.float32)
    return Split(xs[0], labels[0], xs[1], labels[1], cardinality)


def names() -> List[str]:
    return [key(c) for c in CATEGORICAL + NUMERIC]
