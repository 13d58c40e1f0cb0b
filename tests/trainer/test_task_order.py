"""GMSL: the GRU over the tasks reads them in funnel order, so a task's node depends on its own and
the earlier tasks' networks only, and the last node has read them all; for any number of tasks."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tests.trainer.model_fixtures import FEATURES, SMALL, batch
from trainer.models import build_model
from trainer.models.gmsl import gmsl_middle


def _nodes(tasks):
    x = keras.Input((10,))
    middle = gmsl_middle(x, tasks, bottom_dnn_hidden_units=[12], task_dnn_hidden_units=[8], gru_units=5)
    return keras.Model(x, middle)


@pytest.mark.parametrize("tasks", [["click", "cart", "purchase"], ["a", "b", "c", "d"]])
def test_each_node_reads_its_own_and_the_earlier_tasks_networks_only(tasks):
    tf.keras.utils.set_random_seed(2)
    model = _nodes(tasks)
    x = np.random.default_rng(0).normal(size=(32, 10)).astype("float32")
    before = model.predict(x, verbose=0)
    assert list(before) == tasks and all(v.shape == (32, 5) for v in before.values())
    networks = model.get_layer("gmsl_tasks")
    for changed in range(len(tasks)):
        saved = [k.numpy() for k in networks.kernels]
        for k in networks.kernels:  # perturb task `changed`'s network only
            k.assign(tf.tensor_scatter_nd_add(k, [[changed]], tf.random.normal((1,) + tuple(k.shape[1:]))))
        after = model.predict(x, verbose=0)
        for i, task in enumerate(tasks):
            if i < changed:
                np.testing.assert_array_equal(after[task], before[task])
            else:
                assert np.abs(after[task] - before[task]).max() > 1e-6, (task, changed)
        for k, v in zip(networks.kernels, saved):
            k.assign(v)


def test_the_gmsl_model_predicts_the_funnel_with_ctr_from_the_first_node():
    tf.keras.utils.set_random_seed(1)
    model = build_model("gmsl", FEATURES, SMALL["gmsl"])
    x = batch(64, seed=3)
    before = model.predict(x, verbose=0)
    gru = model.get_layer("gmsl_gru")
    kernel = gru.cell.kernel if hasattr(gru, "cell") else gru.kernel
    tasks = model.get_layer("gmsl_tasks")
    tasks.kernels[-1].assign(tf.tensor_scatter_nd_add(tasks.kernels[-1], [[1]],
                                                      tf.ones((1,) + tuple(tasks.kernels[-1].shape[1:]))))
    after = model.predict(x, verbose=0)
    np.testing.assert_array_equal(after["ctr"], before["ctr"])  # the conversion network is after the click node
    assert np.abs(after["cvr"] - before["cvr"]).max() > 1e-6
    assert kernel.shape[0] == SMALL["gmsl"]["task_dnn_hidden_units"][-1]


def test_gmsl_rejects_a_gru_without_units():
    with pytest.raises(ValueError, match="gru_units"):
        build_model("gmsl", FEATURES, dict(SMALL["gmsl"], gru_units=0))
