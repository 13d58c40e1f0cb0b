"""Trainer: run_fn, input functions, layers and models.

TF 2.16 defaults to Keras 3, but TFT 1.16 and TFMA 0.47 are built on tf_keras;
the environment variable must be set before TensorFlow is first imported.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
