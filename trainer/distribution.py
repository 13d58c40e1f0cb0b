"""Which ``tf.distribute`` strategy the Trainer runs under, and what a worker does differently.

The TFX Trainer calls ``run_fn`` once per process: on one machine that is the
only process; on a training cluster (Vertex AI, Kubeflow's TFJob, a set of GPU
pods) every worker runs it with a ``TF_CONFIG`` naming the cluster and its own
role. So the strategy is chosen from what the process sees, not from code:

- ``TF_CONFIG`` names two or more workers (chief + workers):
  ``MultiWorkerMirroredStrategy`` (synchronous data parallelism; collectives
  over gRPC, NCCL between GPUs when there are any);
- otherwise two or more visible GPUs: ``MirroredStrategy`` over them;
- otherwise the default strategy (one CPU or one GPU).

``trainer.distribution.strategy`` forces one (``default``, ``mirrored``,
``multi_worker``) instead of ``auto``.

``trainer.batch_size`` is the **global** batch: each of N replicas steps on
batch_size / N examples and the gradients are summed across replicas, so a run
on N workers takes the same steps on the same examples as a run on one
(``shard_policy: data``, the default: each worker reads the window and keeps
its slice of every global batch). ``shard_policy: file`` gives each worker its
own files instead (less reading per worker on big windows, but needs at least
as many files as workers and visits the examples in another order).

Only the chief writes the served model; other workers must still take part in
the save (a SavedModel export may read distributed variables collectively), so
they write to a scratch directory that is removed afterwards.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from typing import Any, Dict, Mapping, Optional, Tuple

import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
SHARD_POLICIES = {"data": tf.data.experimental.AutoShardPolicy.DATA,
                  "file": tf.data.experimental.AutoShardPolicy.FILE}


def parse_tf_config(raw: Optional[str]) -> Dict[str, Any]:
    """TF_CONFIG as a dict ({} when unset); a malformed value is an error that says what is wrong."""
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}); expected e.g. "
                         '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                         '"task": {"type": "worker", "index": 0}}') from e
    if not isinstance(config, dict) or not isinstance(config.get("cluster", {}), dict):
        raise ValueError(f"TF_CONFIG must be an object with a 'cluster' mapping, got {raw!r}")
    return config


def cluster_workers(tf_config: Mapping[str, Any]) -> int:
    """Processes that train (chief + workers); parameter servers and evaluators do not step."""
    cluster = tf_config.get("cluster") or {}
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def is_chief(tf_config: Mapping[str, Any]) -> bool:
    """The chief is task 'chief', or worker 0 when the cluster has no chief (Keras' rule)."""
    task = tf_config.get("task") or {}
    if not task:
        return True
    kind, index = task.get("type"), int(task.get("index", 0))
    has_chief = bool((tf_config.get("cluster") or {}).get("chief"))
    return kind == "chief" or (kind == "worker" and index == 0 and not has_chief)


def strategy_kind(setting: str, tf_config: Mapping[str, Any], num_gpus: int) -> str:
    if setting not in STRATEGIES:
        raise ValueError(f"trainer.distribution.strategy must be one of {STRATEGIES}, got {setting!r}")
    if setting != "auto":
        if setting == "multi_worker" and cluster_workers(tf_config) < 1:
            raise ValueError("trainer.distribution.strategy is multi_worker but TF_CONFIG names no cluster; "
                             "set TF_CONFIG on every worker (see deploy/README.md, Training on several workers)")
        return setting
    if cluster_workers(tf_config) > 1:
        return "multi_worker"
    if num_gpus > 1:
        return "mirrored"
    return "default"


def make_strategy(kind: str) -> tf.distribute.Strategy:
    if kind == "multi_worker":
        # AUTO: NCCL between GPUs, ring all-reduce over gRPC between CPU workers.
        return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.AUTO))
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def choose(config: Mapping[str, Any]) -> Tuple[tf.distribute.Strategy, Dict[str, Any]]:
    """(the strategy, a description for the train summary) from ``trainer.distribution`` and the process."""
    settings = dict(config.get("distribution") or {})
    unknown = sorted(set(settings) - {"strategy", "shard_policy"})
    if unknown:
        raise ValueError(f"trainer.distribution has unknown keys {unknown}; known: ['strategy', 'shard_policy']")
    policy = settings.get("shard_policy", "data")
    if policy not in SHARD_POLICIES:
        raise ValueError(f"trainer.distribution.shard_policy must be one of {sorted(SHARD_POLICIES)}, "
                         f"got {policy!r}")
    tf_config = parse_tf_config(os.environ.get("TF_CONFIG"))
    gpus = len(tf.config.list_physical_devices("GPU"))
    kind = strategy_kind(settings.get("strategy", "auto"), tf_config, gpus)
    strategy = make_strategy(kind)
    info = {"strategy": kind, "replicas": int(strategy.num_replicas_in_sync), "gpus": gpus,
            "workers": max(cluster_workers(tf_config), 1), "chief": is_chief(tf_config), "shard_policy": policy}
    logging.info("trainer: distribution %s", info)
    return strategy, info


def distribute_options(policy: str) -> tf.data.Options:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = SHARD_POLICIES[policy]
    return options


def write_dir(target: str, chief: bool) -> str:
    """Where this worker writes what the chief writes to ``target``."""
    return target if chief else tempfile.mkdtemp(prefix="rankpipe-worker-")


def discard(path: str, target: str) -> None:
    if path != target:
        shutil.rmtree(path, ignore_errors=True)
