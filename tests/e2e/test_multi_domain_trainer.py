"""The Trainer's own train() on the pipeline's day-1 output with a multi-domain model: the same
run_fn path the TFX Trainer takes, with model: transfer."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from loggen.world import DEFAULT_SCENES
from tests.e2e.test_airflow_dag import _artifact_dir

pytestmark = pytest.mark.e2e


def test_the_transfer_model_trains_on_pipeline_output_and_reports_attention_for_every_scene(day1, home, tmp_path):
    from trainer.run import train
    examples = _artifact_dir(home, "LogJoinExampleGen", "examples")
    config = dict(day1.trainer, model="transfer", epochs=1, heads=day1.heads,
                  feature_spec_path=day1.feature_spec_path,
                  model_params={"multi_task": "mmoe", "multi_task_params": {"num_experts": 2},
                                "tower_dnn_hidden_units": [32], "domain_tower_dnn_hidden_units": [32]},
                  multi_domain=dict(day1.trainer["multi_domain"], critic_steps=1, source_scene="main_search"))
    out = str(tmp_path / "serving")
    summary = train([os.path.join(examples, "Split-train", "*")], [os.path.join(examples, "Split-eval", "*")],
                    _artifact_dir(home, "Transform", "transform_graph"), out, config)
    json.dumps(summary)  # what run_fn writes to train_summary.json

    attention = summary["attention_by_scene"]
    assert set(attention) == set(DEFAULT_SCENES)  # every scene, by name from the Transform vocabulary
    features = {f for row in attention.values() for f in row}
    assert {"item_price", "item_brand", "scene"} <= features
    assert all(0 < w < 1 for row in attention.values() for w in row.values())
    assert {"d_c", "d_s", "d_t", "val_d_c"} <= set(summary["history"])

    serve = tf.saved_model.load(out).signatures["serving_default"]
    records = [r.numpy() for r in tf.data.TFRecordDataset(
        glob.glob(os.path.join(examples, "Split-eval", "*")), compression_type="GZIP").take(200)]
    pred = serve(examples=tf.constant(records))
    for head in ("ctr", "cvr", "ctcvr"):
        assert np.all((pred[head].numpy() > 0) & (pred[head].numpy() < 1))
    np.testing.assert_allclose(pred["ctcvr"].numpy(), pred["ctr"].numpy() * pred["cvr"].numpy(), rtol=1e-6)
