"""Run dates, spans and versions: the one vocabulary every layer shares, importable without TFX.

Why a module of its own: the compiled pipeline's runtime parameters are bound
in every Airflow task (orchestration/node_runner.py), the log join turns a run
date into a span, the training-window resolver turns spans back into dates,
and the pusher turns a span's date into a serving version. Kept apart, these
helpers pulled the components into the orchestration code and back (an import
circle); here they cost no TFX or TensorFlow import.

A span is a day: the number of days since ``schemas.EPOCH`` of the impressions
it holds (``run_date - label_delay_days``).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Union

from schemas import EPOCH

# The compiled pipeline's runtime parameters, bound by each task (orchestration/node_runner.py).
RUN_DATE_PARAM = "run_date"
PUSH_PARAM = "push"
# Stands for the run date in a Resolver's config, which cannot hold a RuntimeParameter.
RUN_DATE_PLACEHOLDER = "${run_date}"


def parse_run_date(value: Any) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise ValueError(f"run_date must be a date YYYY-MM-DD (the Airflow logical date), got {value!r}") from None


def date_to_span(date: dt.date) -> int:
    return (date - EPOCH).days


def span_to_date(span: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(span))


def span_version(span_date: str) -> int:
    """A span's serving version: its date as YYYYMMDD, so a day has one version and versions sort by day."""
    return int(dt.date.fromisoformat(span_date).strftime("%Y%m%d"))


def run_date_parameter():
    """The run date as a TFX RuntimeParameter (the compiled pipeline); TFX imported on call."""
    from tfx.orchestration import data_types
    return data_types.RuntimeParameter(name=RUN_DATE_PARAM, ptype=str)


def push_parameter():
    """Whether a blessed model is pushed (1) or kept (0, backfills), as a RuntimeParameter."""
    from tfx.orchestration import data_types
    return data_types.RuntimeParameter(name=PUSH_PARAM, ptype=int, default=1)


def run_date_in_config(run_date: Union[str, Any]) -> str:
    """A Resolver's config holds plain values: the date itself, or the placeholder each task fills in."""
    return run_date if isinstance(run_date, str) else RUN_DATE_PLACEHOLDER
