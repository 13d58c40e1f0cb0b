"""Strategy choice from the process's view (TF_CONFIG, GPUs) and the worker entry point's overrides."""
import json

import pytest

from trainer import distribution
from trainer.worker import parse_sets

TWO_WORKERS = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}


@pytest.mark.parametrize("tf_config,gpus,expected", [
    ({}, 0, "default"),
    ({}, 1, "default"),
    ({}, 4, "mirrored"),
    (TWO_WORKERS, 0, "multi_worker"),
    (TWO_WORKERS, 8, "multi_worker"),
    ({"cluster": {"chief": ["h0:1"], "worker": ["h1:1"]}, "task": {"type": "chief", "index": 0}}, 0, "multi_worker"),
    ({"cluster": {"worker": ["h0:1"]}, "task": {"type": "worker", "index": 0}}, 2, "mirrored"),
    ({"cluster": {"worker": ["h0:1"], "ps": ["p:1", "p:2"]}, "task": {"type": "worker", "index": 0}}, 0, "default"),
])
def test_auto_picks_multi_worker_for_a_cluster_then_mirrored_for_several_gpus(tf_config, gpus, expected):
    assert distribution.strategy_kind("auto", tf_config, gpus) == expected


def test_a_forced_strategy_wins_and_a_wrong_one_is_named():
    assert distribution.strategy_kind("default", TWO_WORKERS, 4) == "default"
    with pytest.raises(ValueError, match="must be one of"):
        distribution.strategy_kind("horovod", {}, 0)
    with pytest.raises(ValueError, match="TF_CONFIG names no cluster"):
        distribution.strategy_kind("multi_worker", {}, 0)


@pytest.mark.parametrize("tf_config,chief", [
    ({}, True),
    (TWO_WORKERS, False),
    (dict(TWO_WORKERS, task={"type": "worker", "index": 0}), True),
    ({"cluster": {"chief": ["h0:1"], "worker": ["h1:1"]}, "task": {"type": "worker", "index": 0}}, False),
    ({"cluster": {"chief": ["h0:1"], "worker": ["h1:1"]}, "task": {"type": "chief", "index": 0}}, True),
])
def test_only_the_chief_writes(tf_config, chief):
    assert distribution.is_chief(tf_config) is chief


def test_malformed_tf_config_says_what_is_expected():
    assert distribution.parse_tf_config("") == {}
    assert distribution.parse_tf_config(json.dumps(TWO_WORKERS)) == TWO_WORKERS
    with pytest.raises(ValueError, match="not valid JSON.*cluster"):
        distribution.parse_tf_config("{worker: [h1]}")
    with pytest.raises(ValueError, match="'cluster' mapping"):
        distribution.parse_tf_config('{"cluster": ["h1:1"]}')


def test_distribution_settings_are_checked(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="unknown keys \\['shards'\\]"):
        distribution.choose({"distribution": {"shards": 2}})
    with pytest.raises(ValueError, match="shard_policy must be one of"):
        distribution.choose({"distribution": {"shard_policy": "hint"}})
    strategy, info = distribution.choose({})
    assert info == dict(info, strategy="default", replicas=1, workers=1, chief=True, shard_policy="data")
    assert strategy.num_replicas_in_sync == 1


def test_worker_overrides_are_nested_json_values():
    assert parse_sets(["trainer.epochs=2", 'trainer.model_params={"a": [1]}', "trainer.model=transfer",
                       "trainer.multi_domain.critic_steps=1"]) == {
        "trainer": {"epochs": 2, "model_params": {"a": [1]}, "model": "transfer",
                    "multi_domain": {"critic_steps": 1}}}
    with pytest.raises(SystemExit, match="key=value"):
        parse_sets(["trainer.epochs"])
