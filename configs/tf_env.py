"""The process environment TensorFlow reads once, at its first import; every entry point imports this first.

TF 2.16 defaults to Keras 3, but TFT 1.16 and TFMA 0.47 are built on tf_keras,
so ``TF_USE_LEGACY_KERAS=1`` must be in the environment before TensorFlow is
imported, in this process and in every process it starts (Beam workers,
Airflow tasks, the serving check). ``configs`` imports this module, so loading
the config sets it; ``trainer`` imports it for processes that train without a
config (TFX's Trainer executor). A value the user set is kept.
"""
import os

ENV = {"TF_USE_LEGACY_KERAS": "1"}

for _name, _value in ENV.items():
    os.environ.setdefault(_name, _value)
