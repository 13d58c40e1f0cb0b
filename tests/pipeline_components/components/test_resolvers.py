"""The training window: anchored at the run's own span, one artifact per span, validated days only."""
import datetime as dt

import pytest
from tfx.types import standard_artifacts

from pipeline_components.components.anomalies_gate import ValidationResult
from pipeline_components.spans import date_to_span
from pipeline_components.components.resolvers import (OptionalLatestStrategy, SpanBaselineStrategy, SpanWindowError,
                                                       SpanWindowStrategy,
                                                       select_window, window_spans)

D = dt.date(2026, 11, 20)


def _examples(art_id, day):
    a = standard_artifacts.Examples()
    a.id = art_id
    a.span = date_to_span(day)
    return a


def _validated(examples_id):
    r = ValidationResult()
    r.id = 1000 + examples_id
    r.set_int_custom_property("examples_id", examples_id)
    return r


def _days(n):
    return [D + dt.timedelta(days=i) for i in range(n)]


def _resolve(arts, validated, run_date, num_spans=3, delay=0):
    s = SpanWindowStrategy(run_date=run_date, num_spans=num_spans, label_delay_days=delay)
    return s.resolve_artifacts(None, {"examples": arts, "validated": validated})["examples"]


def test_backfill_window_ends_at_its_own_day_not_at_the_newest_span():
    arts = [_examples(i + 1, d) for i, d in enumerate(_days(6))]  # spans D..D+5 exist
    got = _resolve(arts, [_validated(a.id) for a in arts], (D + dt.timedelta(days=2)).isoformat())
    assert [a.id for a in got] == [1, 2, 3]


def test_a_rerun_day_counts_once_with_its_newest_artifact():
    arts = [_examples(1, D), _examples(2, D + dt.timedelta(days=1)), _examples(3, D)]
    got = _resolve(arts, [_validated(a.id) for a in arts], (D + dt.timedelta(days=1)).isoformat())
    assert [a.id for a in got] == [3, 2]


def test_days_that_failed_validation_are_left_out():
    arts = [_examples(i + 1, d) for i, d in enumerate(_days(3))]
    got = _resolve(arts, [_validated(1), _validated(3)], (D + dt.timedelta(days=2)).isoformat())
    assert [a.id for a in got] == [1, 3]


def test_this_runs_span_missing_is_an_error_naming_the_date():
    arts = [_examples(1, D)]
    with pytest.raises(SpanWindowError, match="2026-11-21"):
        _resolve(arts, [_validated(1)], "2026-11-21")
    with pytest.raises(SpanWindowError, match="2026-11-20"):  # joined, but its gate failed
        _resolve(arts, [], "2026-11-20")


def test_label_delay_moves_the_window_to_the_impression_days():
    assert window_spans("2026-11-23", 3, 2) == [date_to_span(D) - 1, date_to_span(D)]


def test_window_size_must_be_positive():
    with pytest.raises(ValueError, match="num_spans"):
        SpanWindowStrategy(run_date="2026-11-20", num_spans=0)


def test_select_window_without_validation_info_takes_every_span():
    arts = [_examples(i + 1, d) for i, d in enumerate(_days(4))]
    assert [a.id for a in select_window(arts, None, window_spans("2026-11-23", 0, 2))] == [3, 4]


def test_optional_latest_is_empty_on_the_first_run_and_newest_after():
    s = OptionalLatestStrategy()
    assert s.resolve_artifacts(None, {"cache": []}) == {"cache": []}
    arts = [_examples(5, D), _examples(9, D), _examples(7, D)]
    assert [a.id for a in s.resolve_artifacts(None, {"cache": arts})["cache"]] == [9]


def _model(model_id):
    m = standard_artifacts.Model()
    m.id = model_id
    m.uri = f"/models/{model_id}"
    return m


def _blessing(blessing_id, model_id, day, blessed=1):
    b = standard_artifacts.ModelBlessing()
    b.id = blessing_id
    b.set_int_custom_property("blessed", blessed)
    b.set_int_custom_property("current_model_id", model_id)
    if day is not None:
        b.set_string_custom_property("span_date", f"{day}")
    return b


def _baseline(models, blessings, run_day, delay=0):
    s = SpanBaselineStrategy(run_date=f"{run_day}", label_delay_days=delay)
    got = s.resolve_artifacts(None, {"model": models, "model_blessing": blessings})
    return [m.id for m in got["model"]], [b.id for b in got["model_blessing"]]


def test_baseline_is_the_model_of_the_greatest_earlier_span_not_the_newest_blessing():
    d1, d2, d3 = _days(3)
    # Blessed in this order: day 1, day 3 (daily), then a backfill of day 2 (newest id).
    models = [_model(1), _model(3), _model(2)]
    blessings = [_blessing(11, 1, d1), _blessing(13, 3, d3), _blessing(14, 2, d2)]
    assert _baseline(models, blessings, d3 + dt.timedelta(days=1)) == ([3], [13])  # next daily: day 3's model
    assert _baseline(models, blessings, d2) == ([1], [11])                          # the backfill of day 2
    assert _baseline(models, blessings, d3) == ([2], [14])                          # a rerun of day 3
    assert _baseline(models, blessings, d1) == ([], [])                             # nothing before day 1


def test_baseline_skips_refused_models_and_takes_the_newest_blessing_of_a_rerun_span():
    d1, d2 = _days(2)
    models = [_model(1), _model(2), _model(3)]
    blessings = [_blessing(11, 1, d1), _blessing(12, 2, d1), _blessing(13, 3, d1, blessed=0)]
    assert _baseline(models, blessings, d2) == ([2], [12])


def test_baseline_uses_label_delay_for_the_runs_span_and_legacy_blessings_only_as_fallback():
    d1, d2, d3 = _days(3)
    models = [_model(1), _model(2)]
    legacy = _blessing(12, 2, None)           # blessed before span_date was recorded
    assert _baseline(models, [_blessing(11, 1, d1), legacy], d3, delay=1) == ([1], [11])  # span d2
    assert _baseline(models, [_blessing(11, 1, d1), legacy], d2, delay=1) == ([2], [12])  # span d1: none dated
