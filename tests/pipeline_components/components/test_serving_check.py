"""ServingCheck's fresh-process worker on small SavedModels that are right and wrong on purpose."""
import os

import pytest
import tensorflow as tf

from pipeline_components.components.serving_check import run_worker, verdict
from tests.waits import scaled


class Heads(tf.Module):
    """ctr from the example's `x`; ctcvr = ctr * 0.5 unless `broken` says otherwise."""

    def __init__(self, broken: str = ""):
        super().__init__()
        self.broken = broken

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        x = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
        ctr = tf.sigmoid(x)
        cvr = tf.fill(tf.shape(x), 0.5)
        ctcvr = ctr * cvr
        if self.broken == "ctcvr_above_ctr":
            ctcvr = tf.minimum(ctr * 1.5, 1.0)
        if self.broken == "nan":
            ctr = ctr * float("nan")
        if self.broken == "logits":
            cvr = x * 10.0
        return {"ctr": ctr, "cvr": cvr, "ctcvr": ctcvr}


def _sample(tmp_path, n=32):
    path = str(tmp_path / "sample.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for i in range(n):
            ex = tf.train.Example(features=tf.train.Features(feature={
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=[i / 8.0 - 2.0]))}))
            w.write(ex.SerializeToString())
    return path


def _model(tmp_path, broken):
    module = Heads(broken)
    path = str(tmp_path / f"model_{broken or 'ok'}")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


@pytest.mark.parametrize("broken, reason", [
    ("", None),
    ("ctcvr_above_ctr", "ctcvr > ctr for 32 of 32 examples"),
    ("nan", "head 'ctr': 32 non-finite outputs"),
    ("logits", "head 'cvr': outputs outside [0, 1]"),
])
def test_worker_loads_in_a_fresh_process_and_flags_broken_outputs(tmp_path, broken, reason):
    result = run_worker(_model(tmp_path, broken), _sample(tmp_path), repeats=5, timeout_s=scaled(120))
    assert result["examples"] == 32 and result["heads"] == ["ctcvr", "ctr", "cvr"]
    reasons = verdict(result, latency_budget_ms=10_000)
    if reason is None:
        assert reasons == []
    else:
        assert len(reasons) == 1 and reason in reasons[0]


def test_a_model_that_does_not_load_or_misses_the_latency_budget_is_refused(tmp_path):
    os.makedirs(tmp_path / "empty")
    reasons = verdict(run_worker(str(tmp_path / "empty"), _sample(tmp_path), 5, scaled(120)), 10_000)
    assert len(reasons) == 1 and reasons[0].startswith("the model does not load or run:")
    ok = run_worker(_model(tmp_path, ""), _sample(tmp_path), 5, scaled(120))
    slow = verdict(ok, latency_budget_ms=0.0)
    assert len(slow) == 1 and "exceeds the budget of 0.0 ms" in slow[0]


class FunnelHeads(tf.Module):
    """A three-step funnel with a regression head: ctr, cart, cart_es, purchase, purchase_es, dwell."""

    def __init__(self, broken: str = ""):
        super().__init__()
        self.broken = broken

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        x = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
        ctr, cart, purchase = tf.sigmoid(x), tf.fill(tf.shape(x), 0.4), tf.fill(tf.shape(x), 0.3)
        out = {"ctr": ctr, "cart": cart, "cart_es": ctr * cart, "purchase": purchase,
               "purchase_es": ctr * cart * purchase, "dwell": 30.0 + 10.0 * x}   # seconds: above 1 is right
        if self.broken == "purchase_es_above_cart_es":
            out["purchase_es"] = tf.minimum(ctr * cart * 1.2, 1.0)
        if self.broken == "no_cart_es":
            del out["cart_es"]
        return out


FUNNEL_HEADS = {"ctr": {"type": "binary"}, "cart": {"type": "binary"}, "cart_es": {"type": "binary", "parent": "ctr"},
                "purchase": {"type": "binary"}, "purchase_es": {"type": "binary", "parent": "cart_es"},
                "dwell": {"type": "regression"}}


@pytest.mark.parametrize("broken, reason", [
    ("", None),
    ("purchase_es_above_cart_es", "purchase_es > cart_es for 32 of 32 examples"),
    ("no_cart_es", "the model does not serve the heads ['cart_es'] of the declared tasks"),
])
def test_the_worker_checks_the_declared_funnel_heads(tmp_path, broken, reason):
    module = FunnelHeads(broken)
    path = str(tmp_path / f"funnel_{broken or 'ok'}")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    result = run_worker(path, _sample(tmp_path), repeats=3, timeout_s=scaled(120), heads=FUNNEL_HEADS)
    reasons = verdict(result, latency_budget_ms=10_000)
    if reason is None:
        assert reasons == [] and result["mean"]["dwell"] > 1   # a regression head is not held to [0, 1]
    else:
        assert len(reasons) == 1 and reason in reasons[0], reasons
