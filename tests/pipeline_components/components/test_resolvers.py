"""The training window: anchored at the run's own span, one artifact per span, validated days only."""
import datetime as dt

import pytest
from tfx.types import standard_artifacts

from pipeline_components.components.anomalies_gate import ValidationResult
from pipeline_components.spans import date_to_span
from pipeline_components.components.resolvers import (OptionalLatestStrategy, SpanWindowError, SpanWindowStrategy,
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
