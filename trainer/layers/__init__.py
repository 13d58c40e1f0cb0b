"""Reusable, serialisable tf_keras layers (each has get_config and is registered)."""
from trainer.layers.dnn import DNN  # noqa: F401
