"""Trainer: run_fn, input functions, layers and models.

TF 2.16 defaults to Keras 3, but TFT 1.16 and TFMA 0.47 are built on tf_keras:
configs/tf_env.py sets the environment before TensorFlow is first imported.
The trainer imports only ``schemas`` and ``configs``, so a worker pod needs no
pipeline code.
"""
from configs import tf_env  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
