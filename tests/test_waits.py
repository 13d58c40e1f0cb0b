"""The test suite's waits: they end on progress or on failure, and their ceilings scale with the machine."""
import itertools

import pytest

from tests import waits


@pytest.fixture(autouse=True)
def reference_speed(monkeypatch):
    monkeypatch.setenv(waits.SLOWNESS_ENV, "1")


def test_a_wait_returns_the_first_truthy_value():
    calls = itertools.count()
    assert waits.wait_for("three polls", lambda: next(calls) >= 2 and "done", stall_s=5, interval_s=0.001) == "done"


def test_a_wait_keeps_going_while_there_is_progress_and_fails_when_it_stops():
    ticks = itertools.count()
    # Progress for 30 polls (far longer than the stall period in total), then none.
    with pytest.raises(pytest.fail.Exception, match=r"no progress for 0s waiting for a stuck run; last state: 30"):
        waits.wait_for("a stuck run", lambda: False, stall_s=0.05, interval_s=0.01,
                       progress=lambda: min(next(ticks), 30))
    assert next(ticks) > 30  # it outlived the stall period many times over while progress went on


def test_a_reported_failure_ends_the_wait_at_once_with_its_reason():
    polls = itertools.count()
    with pytest.raises(pytest.fail.Exception, match="the run: Trainer failed for run_date 2026-11-20: OOM"):
        waits.wait_for("the run", lambda: next(polls) > 1000, stall_s=60, interval_s=0.001,
                       failure=lambda: "Trainer failed for run_date 2026-11-20: OOM")
    assert next(polls) == 1


def test_ceilings_scale_with_the_measured_slowness_but_never_shrink(monkeypatch):
    monkeypatch.setenv(waits.SLOWNESS_ENV, "1.7")
    assert waits.scaled(100) == pytest.approx(170)
    monkeypatch.setenv(waits.SLOWNESS_ENV, "0.6")  # a faster machine keeps the base ceilings
    assert waits.scaled(100) == 100

