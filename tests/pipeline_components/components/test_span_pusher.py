"""SpanPusher's executor with real TFX artifacts: versions from the span, backfills aside, reruns in place."""
import json
import os

import pytest
from tfx.types import standard_artifacts

from model_server.versions import list_versions
from pipeline_components.components.span_pusher import Executor
from pipeline_components.spans import span_version


def _model(tmp_path, name, content):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "models" / name)
    serving = os.path.join(model.uri, "Format-Serving")
    os.makedirs(os.path.join(serving, "variables"))
    with open(os.path.join(serving, "saved_model.pb"), "w") as fh:
        fh.write(content)
    return model


def _blessings(span_date, blessed=1):
    mb, ib = standard_artifacts.ModelBlessing(), standard_artifacts.InfraBlessing()
    mb.set_int_custom_property("blessed", blessed)
    ib.set_int_custom_property("blessed", 1)
    ib.set_string_custom_property("span_date", span_date)
    return mb, ib


def push(tmp_path, span_date, content, blessed=1):
    mb, ib = _blessings(span_date, blessed)
    out = standard_artifacts.PushedModel()
    out.uri = str(tmp_path / "pushed" / f"{span_date}-{content}")
    os.makedirs(out.uri, exist_ok=True)
    Executor().Do({"model": [_model(tmp_path, f"{span_date}-{content}", content)], "model_blessing": [mb],
                   "infra_blessing": [ib]}, {"pushed_model": [out]},
                  {"custom_config": json.dumps({"serving_root": str(tmp_path / "serving"), "model_name": "ranking"})})
    return out


def served(tmp_path, version):
    with open(tmp_path / "serving" / "ranking" / str(version) / "saved_model.pb") as fh:
        return fh.read()


def test_version_is_the_span_date_not_the_clock(tmp_path):
    out = push(tmp_path, "2026-11-20", "a")
    assert span_version("2026-11-20") == 20261120
    assert list_versions(str(tmp_path / "serving" / "ranking")) == [20261120]
    assert out.get_string_custom_property("pushed_version") == "20261120"
    assert out.get_string_custom_property("push_kind") == "serving"


def test_a_backfill_older_than_the_served_version_goes_aside(tmp_path):
    push(tmp_path, "2026-11-21", "today")
    out = push(tmp_path, "2026-11-18", "backfill")
    assert list_versions(str(tmp_path / "serving" / "ranking")) == [20261121]
    assert out.get_string_custom_property("push_kind") == "backfill"
    dest = out.get_string_custom_property("pushed_destination")
    assert dest == str(tmp_path / "serving" / "backfills" / "ranking" / "20261118")
    assert open(os.path.join(dest, "saved_model.pb")).read() == "backfill"
    # A newer day than the served one is served.
    push(tmp_path, "2026-11-22", "tomorrow")
    assert list_versions(str(tmp_path / "serving" / "ranking")) == [20261121, 20261122]


def test_rerunning_a_day_replaces_its_version_and_leaves_no_debris(tmp_path):
    push(tmp_path, "2026-11-20", "first")
    push(tmp_path, "2026-11-20", "second")
    root = tmp_path / "serving" / "ranking"
    assert sorted(os.listdir(root)) == ["20261120"]  # no hidden incoming/replaced directories left
    assert served(tmp_path, 20261120) == "second"


def test_an_unblessed_model_is_not_pushed(tmp_path):
    out = push(tmp_path, "2026-11-20", "bad", blessed=0)
    assert out.get_int_custom_property("pushed") == 0
    assert not (tmp_path / "serving").exists()


def test_missing_span_on_the_infra_blessing_is_a_clear_error(tmp_path):
    mb, ib = _blessings("")
    out = standard_artifacts.PushedModel()
    out.uri = str(tmp_path / "p")
    with pytest.raises(ValueError, match="no span_date"):
        Executor().Do({"model": [_model(tmp_path, "m", "x")], "model_blessing": [mb], "infra_blessing": [ib]},
                      {"pushed_model": [out]},
                      {"custom_config": json.dumps({"serving_root": str(tmp_path / "s"), "model_name": "r"})})
