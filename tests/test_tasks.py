"""The ``tasks:`` section: the default funnel's heads are exactly the ones served before tasks were
configurable, any funnel derives its conditional and entire-space heads, and a section that does
not describe a funnel is a config error naming the task."""
import os

import pytest
import yaml

from configs import REPO_ROOT, load_config
from schemas import FEATURE_SPEC_PATH
from pipeline_components.eval_config import gate_thresholds
from schemas.tasks import TaskConfigError, parse_tasks

# configs/pipeline.yaml's `heads:` section before tasks became configurable (the heads every existing
# home, server and client knows): label and evaluation weight per head.
HEADS_BEFORE = {"ctr": {"label": "click"}, "cvr": {"label": "conversion", "eval_weight": "click"},
                "ctcvr": {"label": "conversion"}}


def test_the_default_funnel_keeps_the_heads_labels_and_weights_served_before():
    config = load_config()
    heads = config.heads
    assert list(heads) == ["ctr", "cvr", "ctcvr"]
    assert {h: {k: v for k, v in a.items() if k in ("label", "eval_weight")} for h, a in heads.items()} == HEADS_BEFORE
    assert heads["ctcvr"]["parent"] == "ctr" and heads["cvr"]["given"] == "click"
    assert config.trainer["loss_weights"] == {"ctr": 1.0, "ctcvr": 1.0}


def test_a_three_step_funnel_derives_conditional_and_entire_space_heads():
    funnel = parse_tasks([
        {"name": "ctr", "label": "click"},
        {"name": "cart", "label": "cart", "after": "ctr"},
        {"name": "purchase", "label": "conversion", "after": "cart", "entire_space_head": "ctcvr"},
        {"name": "dwell", "label": "dwell_seconds", "after": "ctr", "type": "regression"},
    ])
    heads = funnel.head_config()
    assert list(heads) == ["ctr", "cart", "cart_es", "purchase", "ctcvr", "dwell"]
    assert heads["cart"] == {"label": "cart", "task": "cart", "type": "binary", "entire_space": False,
                             "given": "click", "eval_weight": "click"}
    assert heads["cart_es"] == {"label": "cart", "task": "cart", "type": "binary", "entire_space": True,
                                "parent": "ctr"}
    assert heads["purchase"]["given"] == "cart" and heads["ctcvr"]["parent"] == "cart_es"
    assert heads["dwell"]["type"] == "regression" and heads["dwell"]["given"] == "click"
    assert "dwell_es" not in heads


@pytest.mark.parametrize("tasks, message", [
    ([{"name": "ctr", "label": "click"}, {"name": "cart", "label": "cart", "after": "clicks"}],
     "task 'cart' comes after 'clicks', which is not a declared task"),
    ([{"name": "a", "label": "x", "after": "b"}, {"name": "b", "label": "y", "after": "a"}],
     "task 'a' is in a cycle of `after`: a -> b -> a"),
    ([{"name": "a", "label": "x", "after": "a"}], "task 'a' is in a cycle of `after`: a -> a"),
    ([{"name": "ctr", "label": "click"}, {"name": "ctr", "label": "cart"}], "task 'ctr' is declared twice"),
    ([{"name": "cart", "label": "cart", "after": "ctr"}, {"name": "ctr", "label": "click"}],
     "task 'cart' is declared before its parent 'ctr'"),
    ([{"name": "dwell", "label": "d", "type": "regression"}, {"name": "x", "label": "x", "after": "dwell"}],
     "task 'x' comes after 'dwell', a regression task"),
    ([{"name": "ctr", "label": "click"}, {"name": "cart", "label": "cart", "after": "ctr", "entire_space_head": "ctr"}],
     "head 'ctr' .* clashes"),
    ([{"name": "ctr", "label": "click", "weight": 2}], r"task 'ctr' has unknown keys \['weight'\]"),
    ([{"name": "ctr", "label": "click", "entire_space_head": "p_click"}], "task 'ctr' follows the impression"),
    ([{"name": "default", "label": "click"}], "may not be named 'default'"),
    ([{"name": "ctr"}], "task 'ctr' needs a label"),
    ([{"name": "ctr", "label": "click", "type": "ordinal"}], "task 'ctr' has type 'ordinal'"),
    ([], "tasks must be a non-empty list"),
])
def test_a_section_that_is_not_a_funnel_is_an_error_naming_the_task(tasks, message):
    with pytest.raises(TaskConfigError, match=message):
        parse_tasks(tasks)


def _user_config(tmp_path, body, labels=()):
    """A user's config over the defaults; ``labels``: label columns added to a copy of the feature spec."""
    if labels:   # labelled samples carry these columns (the log join does not write them)
        body = dict(body, input={"kind": "samples"})
        with open(FEATURE_SPEC_PATH) as fh:
            spec = yaml.safe_load(fh)
        spec["labels"].update({label: {"kind": "label"} for label in labels})
        (tmp_path / "features.yaml").write_text(yaml.safe_dump(spec))
        body["schemas"] = {"features": str(tmp_path / "features.yaml")}
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump(body))
    return load_config(str(path), home=str(tmp_path))


def test_a_users_funnel_replaces_the_per_head_mappings_instead_of_merging_them(tmp_path):
    config = _user_config(tmp_path, {
        "tasks": [{"name": "income", "label": "income"}, {"name": "marital", "label": "never_married"}],
        "trainer": {"loss_weights": {"income": 1.0, "marital": 0.5}},
        "evaluator": {"auc_floor": {"default": 0.7, "marital": 0.8}, "max_auc_drop": 0.01}},
        labels=["income", "never_married"])
    assert list(config.heads) == ["income", "marital"]
    assert config.trainer["loss_weights"] == {"income": 1.0, "marital": 0.5}
    thresholds = gate_thresholds(config.evaluator, config.heads)
    assert thresholds["auc_floor"] == {"income": 0.7, "marital": 0.8}
    assert thresholds["max_mse_increase"] == {}


def test_heads_the_funnel_does_not_have_are_config_errors(tmp_path):
    config = _user_config(tmp_path, {"tasks": [{"name": "income", "label": "income"}],
                                     "trainer": {"loss_weights": {"ctr": 1.0}}}, labels=["income"])
    with pytest.raises(TaskConfigError, match=r"trainer.loss_weights names \['ctr'\], which are not heads"):
        config.heads
    config = _user_config(tmp_path, {"tasks": [{"name": "income", "label": "income"}],
                                     "trainer": {"loss_weights": {"income": 1.0}}}, labels=["income"])
    with pytest.raises(ValueError, match=r"evaluator.auc_floor has no value for heads \['income'\]"):
        gate_thresholds(config.evaluator, config.heads)   # the default floors name ctr, cvr, ctcvr only
    with pytest.raises(ValueError, match=r"evaluator.auc_floor names \['ctr'\], which are not heads"):
        gate_thresholds(dict(config.evaluator, auc_floor={"income": 0.6, "ctr": 0.6}), config.heads)


def test_a_regression_head_gates_on_its_mse_increase_and_has_no_auc_floor(tmp_path):
    config = _user_config(tmp_path, {
        "tasks": [{"name": "ctr", "label": "click"},
                  {"name": "dwell", "label": "dwell_seconds", "after": "ctr", "type": "regression"}],
        "trainer": {"loss_weights": {"ctr": 1.0, "dwell": 0.01}},
        "evaluator": {"auc_floor": {"ctr": 0.6}, "max_auc_drop": {"ctr": 0.01}}}, labels=["dwell_seconds"])
    thresholds = gate_thresholds(config.evaluator, config.heads)   # the default increase, 5 %
    assert thresholds["auc_floor"] == {"ctr": 0.6} and thresholds["max_mse_increase"] == {"dwell": 0.05}
    with pytest.raises(ValueError, match=r"evaluator.max_mse_increase is needed for heads \['dwell'\]"):
        gate_thresholds(dict(config.evaluator, max_mse_increase=None), config.heads)


def test_the_old_heads_section_is_refused_with_what_to_do(tmp_path):
    config = _user_config(tmp_path, {"heads": {"ctr": {"label": "click"}}})
    with pytest.raises(ValueError, match="`heads:` section is now derived from `tasks:`"):
        config.heads


def test_a_task_label_the_feature_spec_does_not_declare_is_an_error(tmp_path):
    config = _user_config(tmp_path, {
        "tasks": [{"name": "ctr", "label": "click"}, {"name": "cart", "label": "cart", "after": "ctr"}],
        "trainer": {"loss_weights": {"ctr": 1.0, "cart_es": 1.0}}})
    with pytest.raises(TaskConfigError, match="task 'cart' has label 'cart', which the feature spec .* does not "
                                              "declare under `labels:`"):
        config.heads


def _check_against_join(config):
    from pipeline_components.components.log_join import check_task_labels, funnel_of
    join = config.log_join
    check_task_labels(config.funnel, funnel_of(join.get("funnel"), join["attribution_window_days"],
                                               config.raw_events_path), config.raw_events_path)


def test_in_logs_mode_the_tasks_must_match_the_labels_and_order_the_join_writes(tmp_path):
    three_step = {"schemas": {"features": "schemas/three_step/features.yaml", "tfdv": "schemas/three_step/schema.pbtxt"},
                  "tasks": [{"name": "ctr", "label": "click"}, {"name": "cart", "label": "cart", "after": "ctr"},
                            {"name": "purchase", "label": "conversion", "after": "cart"}],
                  "trainer": {"loss_weights": {"ctr": 1.0, "cart_es": 1.0, "purchase_es": 1.0}}}
    with pytest.raises(TaskConfigError, match="task 'cart' learns from 'cart', which no step of log_join.funnel "
                                              r"labels \(it labels \['click', 'conversion'\]\)"):
        _check_against_join(_user_config(tmp_path, three_step))   # the default join has no carts step
    skipping = dict(three_step, log_join={"funnel": [
        {"log": "clicks", "label": "click"}, {"log": "carts", "label": "cart", "after": "click"},
        {"log": "conversions", "label": "conversion", "after": "click"}]})   # conversions not after carts
    with pytest.raises(TaskConfigError, match="task 'purchase' comes after 'cart' .* joins 'conversion' after "
                                              "click: its labels would not be nested under 'cart'"):
        _check_against_join(_user_config(tmp_path, skipping))
    _check_against_join(load_config(os.path.join(REPO_ROOT, "configs", "three_step.yaml"), home=str(tmp_path)))
    _check_against_join(_user_config(tmp_path, {"log_join": {"funnel": None}}))   # null: the default join
    assert list(load_config(os.path.join(REPO_ROOT, "configs", "three_step.yaml"), home=str(tmp_path)).heads) == [
        "ctr", "cart", "cart_es", "purchase", "purchase_es"]


def test_without_tasks_a_users_per_head_mapping_merges_with_the_defaults_and_null_removes_a_head(tmp_path):
    config = _user_config(tmp_path, {"trainer": {"loss_weights": {"ctcvr": 2.0}},
                                     "evaluator": {"max_auc_drop": {"cvr": 0.05}}})
    assert config.trainer["loss_weights"] == {"ctr": 1.0, "ctcvr": 2.0}
    factors = _user_config(tmp_path, {"trainer": {"loss_weights": {"cvr": 1.0, "ctcvr": None}}})
    assert factors.trainer["loss_weights"] == {"ctr": 1.0, "cvr": 1.0}
    assert factors.evaluator["calibration_band"] is not None   # null removes only inside per-head mappings
    assert gate_thresholds(config.evaluator, config.heads)["max_auc_drop"] == {"ctr": 0.01, "cvr": 0.05, "ctcvr": 0.01}
