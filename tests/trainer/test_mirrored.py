"""The training wrappers under MirroredStrategy with two replicas (two logical CPUs standing in for
two GPUs): the same steps as one device, and replica-local state (GradNorm's weights, the critic)
updates without errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import REPO_ROOT
from tests.waits import scaled


CASES = ("esmm:fixed", "mmoe:gradnorm", "transfer:fixed")


@pytest.fixture(scope="module")
def trained():
    """Every case in one subprocess (TensorFlow starts once): {case: (one device, two replicas)}."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", "tests.trainer.mirrored_job", *CASES], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=scaled(300))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads(ln[len("RESULT "):]) for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert [r["case"] for r in results] == list(CASES)
    for r in results:
        assert (r["one"]["replicas"], r["two"]["replicas"]) == (1, 2)
    return {r["case"]: (r["one"], r["two"]) for r in results}


def test_two_replicas_take_the_same_steps_as_one_device(trained):
    one, two = trained["esmm:fixed"]
    for key in ("loss", "ctr_loss", "ctcvr_loss"):
        np.testing.assert_allclose(two["history"][key], one["history"][key], rtol=1e-4, err_msg=key)
    np.testing.assert_allclose(two["ctr"], one["ctr"], rtol=1e-4, atol=1e-6)


def test_gradnorm_weights_update_under_two_replicas(trained):
    one, two = trained["mmoe:gradnorm"]
    assert sum(two["task_weights"]) == pytest.approx(2.0, rel=1e-5)  # GradNorm keeps sum = number of tasks
    assert two["task_weights"] != [1.0, 1.0]  # they moved
    np.testing.assert_allclose(two["task_weights"], one["task_weights"], atol=0.05)


def test_the_transfer_model_and_its_critic_train_under_two_replicas(trained):
    one, two = trained["transfer:fixed"]
    assert {"d_c", "d_s", "d_t", "critic_gradient_penalty"} <= set(two["history"])
    assert np.all(np.isfinite(two["history"]["loss"]))
    np.testing.assert_allclose(two["history"]["ctr_loss"], one["history"]["ctr_loss"], rtol=0.05)
