"""The Beam side of the log join: a PTransform over keyed event rows.

Separate from the component so that property tests can feed it random event
streams and compare it with a pure-Python reference join.
"""
from __future__ import annotations

from typing import Dict

import apache_beam as beam

from pipeline_components.components import join_logic


class _JoinGroup(beam.DoFn):
    def __init__(self, window_us: int):
        self._window_us = window_us

    def process(self, element):
        key, groups = element
        row, counts = join_logic.join_impression(groups.get("impressions", []), groups.get("clicks", []),
                                                 groups.get("conversions", []), self._window_us)
        for name, n in counts.items():
            if n:
                yield beam.pvalue.TaggedOutput("counts", (name, n))
        if row is not None:
            yield row


class JoinLogs(beam.PTransform):
    """{'impressions'|'clicks'|'conversions': PCollection[(impression_id, row)]} ->
    (labelled impression rows, (bucket, count) pairs)."""

    def __init__(self, window_us: int):
        super().__init__()
        self._window_us = window_us

    def expand(self, keyed: Dict[str, beam.PCollection]):
        result = (keyed | "CoGroup" >> beam.CoGroupByKey()
                  | "Join" >> beam.ParDo(_JoinGroup(self._window_us)).with_outputs("counts", main="rows"))
        return result.rows, result.counts
