"""preprocessing_fn built from a feature spec: each kind transforms as declared, run through TFT on Beam."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
import yaml
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from schemas import load_feature_spec
from transforms.preprocessing import preprocessing_fn

SPEC = {
    "features": {
        "scene": {"kind": "scene"},
        "brand": {"kind": "categorical", "frequency_threshold": 3, "num_oov_buckets": 2},
        "user": {"kind": "hashed", "hash_buckets": 7},
        "price_z": {"kind": "numeric", "source": "price", "log1p": True},
        "price_01": {"kind": "numeric", "source": "price", "scale": "min_max"},
        "price_raw": {"kind": "numeric", "source": "price", "scale": "none"},
        "price_bucket": {"kind": "bucketized", "source": "price", "num_buckets": 4},
    },
    "labels": {"click": {"kind": "label"}},
    "passthrough": [],
}


def _run(tmp_path, spec, rows):
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(spec))
    feature_spec = {"scene": tf.io.FixedLenFeature([], tf.string), "brand": tf.io.FixedLenFeature([], tf.string),
                    "user": tf.io.FixedLenFeature([], tf.string), "price": tf.io.FixedLenFeature([], tf.float32),
                    "click": tf.io.FixedLenFeature([], tf.int64)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    with tft_beam.Context(temp_dir=str(tmp_path / "tft"), force_tf_compat_v1=False):
        (out, _), _ = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, {"feature_spec_path": str(path)}))
    return out


def _rows():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(200):
        rows.append({"scene": ["a", "b"][i % 2], "brand": "common" if i < 190 else f"rare{i}",
                     "user": f"u{i}", "price": float(rng.uniform(1, 100)), "click": int(i % 3 == 0)})
    return rows


def test_every_kind_transforms_as_the_spec_declares(tmp_path):
    rows = _rows()
    out = _run(tmp_path, SPEC, rows)
    prices = np.array([r["price"] for r in rows])
    col = {k: np.array([o[k] for o in out]).ravel() for k in out[0]}
    # vocabulary: 'common' is index 0, brands seen once fall under the threshold into 2 OOV buckets (1, 2)
    assert set(col["brand"][:190]) == {0} and set(col["brand"][190:]) <= {1, 2}
    assert set(col["scene"]) == {0, 1}
    assert col["user"].min() >= 0 and col["user"].max() < 7
    z = np.log1p(prices)
    np.testing.assert_allclose(col["price_z"], (z - z.mean()) / z.std(), rtol=1e-3, atol=1e-3)
    assert col["price_01"].min() == pytest.approx(0.0) and col["price_01"].max() == pytest.approx(1.0)
    np.testing.assert_allclose(col["price_raw"], prices, rtol=1e-6)
    b = col["price_bucket"]
    assert set(b) == {0, 1, 2, 3}
    assert np.all(np.diff(b[np.argsort(prices)]) >= 0)  # monotone in price
    assert np.all(np.bincount(b) > 30)                  # quantile buckets are roughly equal
    assert set(col["click"]) == {0.0, 1.0}


def test_a_feature_whose_column_is_missing_names_the_column(tmp_path):
    spec = dict(SPEC, features=dict(SPEC["features"], age={"kind": "numeric"}))
    with pytest.raises(Exception, match="reads column 'age'"):
        _run(tmp_path, spec, _rows())


def test_spec_errors_are_caught_when_loading(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"features": {"scene": {"kind": "scene"},
                                                "p": {"kind": "bucketized", "num_buckets": 1}}}))
    with pytest.raises(ValueError, match="num_buckets >= 2"):
        load_feature_spec(str(bad))
    bad.write_text(yaml.safe_dump({"features": {"scene": {"kind": "scene"},
                                                "p": {"kind": "numeric", "scale": "log"}}}))
    load_feature_spec.cache_clear()
    with pytest.raises(ValueError, match="scale 'log'"):
        load_feature_spec(str(bad))
