"""Trains small models twice each in one process, on one device and with MirroredStrategy over two
logical CPUs (the in-process multi-replica path a multi-GPU machine takes), and prints one JSON
line per model. Run as a subprocess: logical devices must be set before TensorFlow starts; one
process for every case, so TensorFlow starts once.

    python -m tests.trainer.mirrored_job esmm:fixed mmoe:gradnorm ..."""
import json
import os
import sys

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from tests.trainer.model_fixtures import FEATURES, SMALL, batch, labels  # noqa: E402
from trainer import optimizers  # noqa: E402
from trainer.models import build_model  # noqa: E402
from trainer.training_model import training_model  # noqa: E402


def run(strategy, model_name, method):
    tf.keras.utils.set_random_seed(0)
    x, y = batch(1024, seed=1), labels(1024, seed=1)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(256)
    config = {"loss_weights": {"ctr": 1.0, "ctcvr": 1.0}, "loss_balancing": {"method": method},
              "multi_domain": {"critic_steps": 1}}
    with strategy.scope():
        model = build_model(model_name, FEATURES, SMALL[model_name])
        trainable = training_model(model, FEATURES, config)
        trainable.compile(optimizer=optimizers.make("lazy_adam", 1e-2))  # the Trainer's default
    history = trainable.fit(ds, epochs=2, verbose=0).history
    pred = model.predict(batch(128, seed=2), verbose=0)
    return {"replicas": strategy.num_replicas_in_sync,
            "history": {k: [float(v) for v in vs] for k, vs in history.items()},
            "ctr": pred["ctr"].ravel().tolist(),
            "task_weights": [float(w) for w in trainable.effective_weights().numpy()]}


if __name__ == "__main__":
    # One strategy for every case: a second MirroredStrategy in the same process starts its
    # collective instance keys where the first did, and the runtime refuses the reuse.
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for case in sys.argv[1:]:
        model_name, method = case.split(":")
        one = run(tf.distribute.get_strategy(), model_name, method)
        two = run(mirrored, model_name, method)
        print("RESULT " + json.dumps({"case": case, "one": one, "two": two}), flush=True)
