"""Settings reach the components from configs/pipeline.yaml (or an override), not from defaults in code."""
import os

import yaml

from configs import DEFAULT_CONFIG, REPO_ROOT, load_config, trainer_config
from pipeline_components.pipeline import create_components


def _by_id(config):
    return {c.id: c for c in create_components(config, "2026-11-20")}


def test_the_serving_checks_split_repeats_and_timeout_come_from_the_config(tmp_path):
    config = load_config(home=str(tmp_path), overrides={"serving_check": {
        "split": "train", "sample_size": 64, "latency_budget_ms": 25, "repeats": 7, "timeout_seconds": 42}})
    props = _by_id(config)["ServingCheck"].exec_properties
    assert (props["split"], props["sample_size"], props["latency_budget_ms"], props["repeats"], props["timeout_s"]) \
        == ("train", 64, 25.0, 7, 42)


def test_every_default_the_factory_reads_is_in_pipeline_yaml(tmp_path):
    """The embedded defaults reach the components unchanged: the values asserted are read from the
    YAML file itself, so a default hard-coded in the factory that differs would show here."""
    with open(DEFAULT_CONFIG) as fh:
        raw = yaml.safe_load(fh)
    components = _by_id(load_config(home=str(tmp_path)))
    props = components["ServingCheck"].exec_properties
    check = raw["serving_check"]
    assert (props["split"], props["repeats"], props["timeout_s"]) == \
        (check["split"], check["repeats"], check["timeout_seconds"])
    assert ("analyzer_cache_resolver" in components) == raw["training_window"]["analyzer_cache"]
    custom = components["Trainer"].exec_properties["custom_config"]
    assert '"seed": %d' % raw["trainer"]["seed"] in custom and '"shuffle_buffer": %d' % raw["trainer"]["shuffle_buffer"] in custom


def test_the_trainers_config_is_built_in_one_place(tmp_path):
    config = load_config(home=str(tmp_path))
    built = trainer_config(config, epochs=9)
    assert built["epochs"] == 9 and built["heads"] == config.heads and built["tasks"] == config.funnel.as_config()
    assert built["feature_spec_path"] == config.feature_spec_path
    assert {k: v for k, v in built.items() if k not in ("epochs", "heads", "tasks", "feature_spec_path")} == \
        {k: v for k, v in config.trainer.items() if k != "epochs"}


def test_the_more_epochs_overlay_reaches_the_trainer_and_keeps_the_default_model(tmp_path):
    """configs/more_epochs.yaml adds the embedding penalty to the default model's parameters (merged,
    not replaced) and turns early stopping on; everything else stays pipeline.yaml's."""
    from trainer.models import model_params
    from trainer.run import early_stopping_settings
    default = load_config(home=str(tmp_path))
    longer = load_config(os.path.join(REPO_ROOT, "configs", "more_epochs.yaml"), str(tmp_path))
    built = trainer_config(longer)
    assert built["model"] == default.trainer["model"] and built["epochs"] > default.trainer["epochs"]
    assert built["model_params"] == dict(default.trainer["model_params"], l2_embedding=1.0,
                                         l2_embedding_scope="batch")
    assert early_stopping_settings(built) == {"holdout_percent": 5, "patience": 2}
    assert early_stopping_settings(trainer_config(default))["holdout_percent"] == 0
    assert set(built["model_params"]) <= set(model_params(built["model"]))
