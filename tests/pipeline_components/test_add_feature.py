"""Adding a feature is a change to the schema files plus data: no code changes.

The test adds a column to the impression log, declares it in copies of the
three schema files (log contract, curated example schema, feature spec), runs
the real pipeline through the Trainer, and checks that the new feature reaches
the model: it has an embedding, and the served prediction depends on it.
"""
import datetime as dt
import glob
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
import yaml
from tfx import v1 as tfx

from loggen import write_days
from configs import load_config
from pipeline_components.pipeline import create_pipeline
from schemas import SCHEMA_DIR, partition_dir

DAY = dt.date(2026, 11, 20)
NEW = "query_length"


def _add_column(logs_root):
    rng = np.random.default_rng(7)
    for path in glob.glob(os.path.join(partition_dir(logs_root, "impressions", DAY), "*.parquet")):
        table = pq.read_table(path)
        values = rng.integers(1, 12, table.num_rows).astype(np.int64)
        pq.write_table(table.append_column(NEW, pa.array(values)), path)


def _extend_schemas(src_dir, dst_dir):
    shutil.copytree(src_dir, dst_dir, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    raw_path = os.path.join(dst_dir, "raw_events.yaml")
    raw = yaml.safe_load(open(raw_path))
    raw["logs"]["impressions"]["fields"][NEW] = {"type": "int64", "required": True, "min": 1}
    yaml.safe_dump(raw, open(raw_path, "w"))
    spec_path = os.path.join(dst_dir, "features.yaml")
    spec = yaml.safe_load(open(spec_path))
    spec["features"][NEW] = {"kind": "bucketized", "num_buckets": 4, "embedding_dim": 4}
    yaml.safe_dump(spec, open(spec_path, "w"))
    with open(os.path.join(dst_dir, "schema.pbtxt"), "a") as fh:
        fh.write('feature {\n  name: "%s"\n  type: INT\n  int_domain { min: 1 }\n'
                 '  presence { min_fraction: 1.0 min_count: 1 }\n  shape { dim { size: 1 } }\n}\n' % NEW)


def _example(row, query_length):
    feats = {k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()])) for k, v in row.items()
             if isinstance(v, str)}
    feats["item_price"] = tf.train.Feature(float_list=tf.train.FloatList(value=[row["item_price"]]))
    feats["position"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[row["position"]]))
    feats[NEW] = tf.train.Feature(int64_list=tf.train.Int64List(value=[query_length]))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def test_a_new_feature_needs_only_schema_files_and_data(tmp_path):
    home = str(tmp_path)
    logs = os.path.join(home, "logs")
    write_days(logs, os.path.join(home, "truth"), DAY, 1, 3000, progress=None)
    _add_column(logs)
    schemas = os.path.join(home, "schemas")
    _extend_schemas(SCHEMA_DIR, schemas)
    override = os.path.join(home, "config.yaml")
    yaml.safe_dump({"schemas": {"raw_events": os.path.join(schemas, "raw_events.yaml"),
                                "features": os.path.join(schemas, "features.yaml"),
                                "tfdv": os.path.join(schemas, "schema.pbtxt")},
                    "trainer": {"epochs": 1}}, open(override, "w"))
    config = load_config(override, home)

    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, DAY.isoformat(), until="Trainer"))

    [model_dir] = glob.glob(os.path.join(config.pipeline_root, "Trainer", "model", "*", "Format-Serving"))
    loaded = tf.saved_model.load(model_dir)
    assert any(f"emb_{NEW}" in v.name for v in loaded.trainable_variables)

    raw = pq.read_table(partition_dir(logs, "impressions", DAY)).slice(0, 20).to_pylist()
    serve = loaded.signatures["serving_default"]
    low = serve(examples=tf.constant([_example(r, 1) for r in raw]))["ctr"].numpy()
    high = serve(examples=tf.constant([_example(r, 11) for r in raw]))["ctr"].numpy()
    assert np.all(np.isfinite(low)) and np.all(np.isfinite(high))
    assert np.abs(low - high).max() > 1e-6  # only the new feature differs between the two requests
