"""The training wrappers under MirroredStrategy with two replicas (two logical CPUs standing in for
two GPUs): the same steps as one device, and replica-local state (GradNorm's weights, the critic)
updates without errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pipeline_components.config import REPO_ROOT
from tests.waits import scaled


def train_both(model, method):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", "tests.trainer.mirrored_job", model, method], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=scaled(300))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert (result["one"]["replicas"], result["two"]["replicas"]) == (1, 2)
    return result["one"], result["two"]


def test_two_replicas_take_the_same_steps_as_one_device():
    one, two = train_both("esmm", "fixed")
    for key in ("loss", "ctr_loss", "ctcvr_loss"):
        np.testing.assert_allclose(two["history"][key], one["history"][key], rtol=1e-4, err_msg=key)
    np.testing.assert_allclose(two["ctr"], one["ctr"], rtol=1e-4, atol=1e-6)


def test_gradnorm_weights_update_under_two_replicas():
    one, two = train_both("mmoe", "gradnorm")
    assert sum(two["task_weights"]) == pytest.approx(2.0, rel=1e-5)  # GradNorm keeps sum = number of tasks
    assert two["task_weights"] != [1.0, 1.0]  # they moved
    np.testing.assert_allclose(two["task_weights"], one["task_weights"], atol=0.05)


def test_the_transfer_model_and_its_critic_train_under_two_replicas():
    one, two = train_both("transfer", "fixed")
    assert {"d_c", "d_s", "d_t", "critic_gradient_penalty"} <= set(two["history"])
    assert np.all(np.isfinite(two["history"]["loss"]))
    np.testing.assert_allclose(two["history"]["ctr_loss"], one["history"]["ctr_loss"], rtol=0.05)
