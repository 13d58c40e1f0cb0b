"""The Beam side of the log join: hash-partitioned Arrow batches through one shuffle.

Why batches: with one Python dict per row through CoGroupByKey, the join ran at
8,000 input rows/s on a core, almost all of it per-row Python in Beam. Here each
chunk's rows are split by ``bucket = hash(impression_id) % B`` into Arrow IPC
blobs (``partition``); one GroupByKey brings a bucket's blobs from the impressions
and every funnel log together; the bucket is joined with pyarrow kernels
(``join_logic.join_funnel_tables``)
and comes out in hash order, ready to write. The shuffle carries about B x chunks
elements instead of one per row, and it is the only one: the label-independent
write order needs no second GroupByKey. Elements are bytes (IPC), so the same
graph runs on Dataflow or Flink, whose workers share nothing with the launcher.

Separate from the component so that property tests can feed it random event
streams and compare it with a pure-Python reference join.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple, Union

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipeline_components.components import join_logic

# The logs of the default funnel (join_logic.default_funnel); a configured funnel has its own (Funnel.logs).
LOGS = ("impressions", "clicks", "conversions")
# The join reads only these columns of the event logs; their other fields stay out of the shuffle.
EVENT_COLUMNS = ("impression_id", "timestamp")


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(blob: bytes) -> pa.Table:
    return pa.ipc.open_stream(blob).read_all()


def partition(log: str, table: pa.Table, buckets: int) -> Iterator[Tuple[int, Tuple[str, bytes]]]:
    """(bucket, (log, IPC blob of the bucket's rows)) for each bucket the table's rows fall in."""
    if log != "impressions":
        table = table.select(list(EVENT_COLUMNS))
    of = join_logic.bucket_of(join_logic.id_hashes(table.column("impression_id")), buckets)
    for bucket, blob in by_bucket(table, of):
        yield bucket, (log, blob)


def by_bucket(table: pa.Table, of: np.ndarray) -> Iterator[Tuple[int, bytes]]:
    """(bucket, IPC blob of its rows) for each bucket in ``of`` (one per row): one sort, then slices."""
    order = np.argsort(of, kind="stable")
    table, of = table.take(pa.array(order)), of[order]
    present, starts = np.unique(of, return_index=True)
    ends = np.append(starts[1:], len(of))
    for b, s, e in zip(present, starts, ends):
        yield int(b), to_ipc(table.slice(int(s), int(e - s)))


def _concat(blobs) -> Optional[pa.Table]:
    tables = [from_ipc(b) for b in blobs]
    if not tables:
        return None
    # Chunks may differ in their extra (unknown) columns: those travel on as nulls where absent.
    return pa.concat_tables(tables, promote=True)


class _JoinBucket(beam.DoFn):
    def __init__(self, funnel: join_logic.Funnel, eval_percent: int):
        self._funnel = funnel
        self._eval_percent = eval_percent

    def process(self, element):
        _, parts = element
        blobs = {log: [] for log in self._funnel.logs}
        for log, blob in parts:
            blobs[log].append(blob)
        impressions = _concat(blobs["impressions"])
        if impressions is None:
            impressions = join_logic.empty_events()
        joined, counts = join_logic.join_funnel_tables(
            impressions, {s.log: _concat(blobs[s.log]) for s in self._funnel.steps}, self._funnel)
        if joined.num_rows:
            for split, table in join_logic.in_write_order(joined, self._eval_percent).items():
                counts[f"examples.{split}"] += table.num_rows
                if table.num_rows:
                    yield split, table
            # Labelled examples per step, named by its log (default: examples.clicks, examples.conversions).
            for step in self._funnel.steps:
                counts[f"examples.{step.log}"] += int(np.sum(joined.column(step.label).to_numpy()))
            for d in joined.column("scene").value_counts().to_pylist():
                counts[f"examples.scene={d['values']}"] += d["counts"]
        for name, n in counts.items():
            if n:
                yield beam.pvalue.TaggedOutput("counts", (name, n))


class JoinLogs(beam.PTransform):
    """PCollection[(bucket, (log, IPC blob))] -> ((split, labelled Arrow table in write order) per
    bucket, (count name, n) pairs). ``funnel``: the label logs (join_logic.Funnel), or an attribution
    window in microseconds for the default funnel (clicks, then conversions within it)."""

    def __init__(self, funnel: Union[join_logic.Funnel, int], eval_percent: int):
        super().__init__()
        self._funnel = funnel if isinstance(funnel, join_logic.Funnel) else join_logic.default_funnel(int(funnel))
        self._eval_percent = eval_percent

    def expand(self, parts: beam.PCollection):
        result = (parts | "GroupByBucket" >> beam.GroupByKey()
                  | "Join" >> beam.ParDo(_JoinBucket(self._funnel, self._eval_percent)).with_outputs(
                      "counts", main="rows"))
        return result.rows, result.counts
