"""Resolver strategies: the training window, the baseline model, and the newest analyzer cache.

The training window is the validated Examples of the last K spans, ending at this run's span.

Why not TFX's ``SpanRangeStrategy`` with a ``RollingRange``: it anchors the
window at the *newest span in ML Metadata*, so a backfill of an old date would
train on today's data; and it keeps every version of a span, so a day that was
rerun would be counted twice. It also cannot tell a day that failed schema
validation from a good one (the Examples artifact is published before the
gate runs).

This strategy anchors at the run's own span (``run_date - label_delay_days``;
under Airflow the compiled config holds a placeholder that each task replaces
with its run's date, see node_runner.py), keeps one artifact per
span (the newest, i.e. the latest rerun), and only spans whose AnomaliesGate
passed. Missing older spans (the first days of a pipeline, or a day that
failed) shrink the window and are logged; a missing *current* span is an error.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Dict, List, Optional

from tfx import types
from tfx.dsl.components.common import resolver

from pipeline_components.spans import date_to_span, parse_run_date, span_to_date

EXAMPLES_KEY = "examples"
VALIDATED_KEY = "validated"


class SpanWindowError(RuntimeError):
    pass


def window_spans(run_date: str, label_delay_days: int, num_spans: int) -> List[int]:
    anchor = date_to_span(parse_run_date(run_date) - dt.timedelta(days=int(label_delay_days)))
    return list(range(anchor - int(num_spans) + 1, anchor + 1))


def select_window(examples: List[types.Artifact], validated_ids: Optional[set], spans: List[int]
                  ) -> List[types.Artifact]:
    """Newest validated artifact per span in ``spans``, oldest span first."""
    newest: Dict[int, types.Artifact] = {}
    for a in examples:
        if validated_ids is not None and a.id not in validated_ids:
            continue
        span = int(a.span)
        if span in spans and (span not in newest or a.id > newest[span].id):
            newest[span] = a
    anchor = spans[-1]
    if anchor not in newest:
        raise SpanWindowError(
            f"no validated examples for this run's span {anchor} ({span_to_date(anchor)}): the log join or the "
            f"AnomaliesGate of this run did not succeed, so there is nothing to train on")
    missing = [s for s in spans if s not in newest]
    if missing:
        logging.warning("training window %s..%s: no validated examples for %s; training on %d of %d spans",
                        span_to_date(spans[0]), span_to_date(anchor),
                        ", ".join(str(span_to_date(s)) for s in missing), len(newest), len(spans))
    return [newest[s] for s in sorted(newest)]


class SpanWindowStrategy(resolver.ResolverStrategy):
    """Resolves ``examples`` to the training window; ``validated`` are AnomaliesGate results."""

    def __init__(self, run_date: str, num_spans: int, label_delay_days: int = 0):
        if int(num_spans) < 1:
            raise ValueError(f"training_window.num_spans must be >= 1, got {num_spans}")
        self._spans = window_spans(run_date, label_delay_days, num_spans)

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        validated = input_dict.get(VALIDATED_KEY)
        ids = None if validated is None else {
            int(r.get_int_custom_property("examples_id")) for r in validated if r.has_custom_property("examples_id")}
        window = select_window(input_dict[EXAMPLES_KEY], ids, self._spans)
        logging.info("training window: spans %s (artifact ids %s)",
                     [str(span_to_date(int(a.span))) for a in window], [a.id for a in window])
        out = {EXAMPLES_KEY: window}
        if validated is not None:
            out[VALIDATED_KEY] = validated
        return out


MODEL_KEY = "model"
BLESSING_KEY = "model_blessing"


def select_baseline(models: List[types.Artifact], blessings: List[types.Artifact], span_date: dt.date
                    ) -> Dict[str, List[types.Artifact]]:
    """The model a run for ``span_date`` replaces: the blessed model with the greatest span
    before ``span_date`` (the newest blessing of that span if it was run several times).

    Why not TFX's ``LatestBlessedModelStrategy``: it takes the newest blessing by
    artifact id, so after a blessed backfill of an old day the next daily run was
    compared with that old day's model, and a backfill was compared with a model
    trained on later days than its own. Blessings written before the DeploymentGate
    recorded ``span_date`` have no span: they are used, newest first, only when no
    dated blessing qualifies (a home upgraded mid-way still has a baseline).
    """
    by_id = {m.id: m for m in models}
    dated, undated = [], []
    for b in blessings:
        if b.get_int_custom_property("blessed") != 1 or b.get_int_custom_property("current_model_id") not in by_id:
            continue
        day = b.get_string_custom_property("span_date") if b.has_custom_property("span_date") else ""
        if not day:
            undated.append(b)
        elif dt.date.fromisoformat(day) < span_date:
            dated.append((dt.date.fromisoformat(day), b.id, b))
    if dated:
        chosen = max(dated, key=lambda t: (t[0], t[1]))[2]
    elif undated:
        chosen = max(undated, key=lambda b: b.id)
    else:
        logging.info("baseline for span %s: no blessed model of an earlier span; evaluating without one", span_date)
        return {MODEL_KEY: [], BLESSING_KEY: []}
    model = by_id[chosen.get_int_custom_property("current_model_id")]
    logging.info("baseline for span %s: model %d of span %s (%s)", span_date, model.id,
                 chosen.get_string_custom_property("span_date") or "unknown", model.uri)
    return {MODEL_KEY: [model], BLESSING_KEY: [chosen]}


class SpanBaselineStrategy(resolver.ResolverStrategy):
    """Resolves ``model`` / ``model_blessing`` to the model this run's span replaces (``select_baseline``)."""

    def __init__(self, run_date: str, label_delay_days: int = 0):
        self._span_date = parse_run_date(run_date) - dt.timedelta(days=int(label_delay_days))

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        return select_baseline(input_dict.get(MODEL_KEY) or [], input_dict.get(BLESSING_KEY) or [],
                               self._span_date)


class OptionalLatestStrategy(resolver.ResolverStrategy):
    """The newest artifact of each input, or none. TFX's LatestArtifactStrategy returns None on
    an empty channel, which the orchestrator logs as an input-resolution error with a
    traceback on every first run; for an optional input (the analyzer cache) an empty
    list is the normal first-day answer."""

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        return {k: sorted(v, key=lambda a: a.id)[-1:] for k, v in input_dict.items()}
