"""Keeps TensorFlow's AutoGraph from rewriting tf_keras's own source at every trace.

AutoGraph converts each Python function a ``tf.function`` calls (it parses the
source, rewrites control flow, recompiles), except modules on its do-not-convert
list: ``tensorflow``, ``keras``, ``numpy`` and a few more. Keras 2 now ships as
the ``tf_keras`` package, which that list does not name, so the first ``fit`` in
every process converted Keras's whole training loop, metrics, losses and
optimizer: about 5,000 functions. On the reference 2-core machine, ESMM on a
5,000-impression day: first epoch 14.7 s -> 2.9 s, datasets and model 7.6 s ->
2.5 s, the whole training process 31.9 s -> 14.0 s, with the same losses and
AUCs (``python -m benchmarks.trainer_fixed_cost``, fresh processes, alternating).

Keras 2 under TF <= 2.15 lived in the ``keras`` module and was never converted,
so tf_keras's code is written to run as plain Python. Our own code is still converted:
Keras converts every layer's ``call`` itself (``base_layer.__call__`` applies
``autograph.tf_convert``), and the rule only stops conversion *inside* tf_keras
modules. ``tests/trainer/test_autograph_rules.py`` checks both. One consequence:
a Model subclass's ``train_step``/``test_step`` is called by tf_keras's loop, so
it is not converted: Python ``if`` there must test Python values (ours do), and
tensor conditions use ``tf.cond``.

The list is TensorFlow's private ``autograph.core.config.CONVERSION_RULES``; if a
TensorFlow release moves it, training still works (only slower) and a warning
says so. ``RANKPIPE_AUTOGRAPH_CONVERT_KERAS=1`` turns the rule off (the
benchmark's comparison; a tf_keras release that needed conversion).
"""
from __future__ import annotations

import logging
import os

SKIPPED_PACKAGES = ("tf_keras",)

log = logging.getLogger("rankpipe.trainer")


def install() -> bool:
    """Adds a do-not-convert rule per package in SKIPPED_PACKAGES (once); returns whether
    the rules are in place."""
    if os.environ.get("RANKPIPE_AUTOGRAPH_CONVERT_KERAS") == "1":
        return False
    try:
        from tensorflow.python.autograph.core import config, config_lib
        rules = config.CONVERSION_RULES
        rule = config_lib.DoNotConvert
    except (ImportError, AttributeError) as err:  # pragma: no cover - depends on the TF release
        log.warning("AutoGraph's conversion rules are not where TF 2.16 keeps them (%s): tf_keras's code "
                    "will be converted at every trace, which is correct but slower", err)
        return False
    present = {getattr(r, "_prefix", None) for r in rules if isinstance(r, rule)}
    missing = tuple(rule(p) for p in SKIPPED_PACKAGES if p not in present)
    if missing:
        config.CONVERSION_RULES = missing + tuple(rules)
    return True
