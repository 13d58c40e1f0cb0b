"""Property: the Beam join equals a small pure-Python reference join on random event streams,
and the vectorised join of a bucket equals the per-id rules of join_logic.join_impression; the same
for three-step funnels (clicks, carts, conversions) with random parents and windows."""
import collections

import apache_beam as beam
import pyarrow as pa
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_components.components import join_logic
from pipeline_components.components.join_beam import JoinLogs, partition

WINDOW = 100
IDS = [f"i{n}" for n in range(6)]
ORPHANS = ["o1", "o2"]

imp_st = st.lists(st.tuples(st.sampled_from(IDS), st.integers(0, 50), st.sampled_from(["a", "b"])), max_size=12)
event_st = st.lists(st.tuples(st.sampled_from(IDS + ORPHANS), st.integers(0, 400)), max_size=12)


def reference_join(imps, clicks, convs, window):
    """Written independently of join_logic: sort-based, one pass per impression id."""
    counts = collections.Counter()
    rows = []
    imp_ids = {i for i, _, _ in imps}
    for cid, _ in clicks:
        if cid not in imp_ids:
            counts["clicks.orphan"] += 1
    for vid, _ in convs:
        if vid not in imp_ids:
            counts["conversions.orphan"] += 1
    for iid in sorted(imp_ids):
        mine = sorted((ts, scene) for i, ts, scene in imps if i == iid)
        counts["impressions.joined"] += 1
        counts["impressions.duplicate"] += len(mine) - 1
        ts_clicks = sorted(ts for c, ts in clicks if c == iid)
        ts_convs = [ts for c, ts in convs if c == iid]
        click = int(bool(ts_clicks))
        conversion = 0
        if click:
            counts["clicks.joined"] += 1
            counts["clicks.duplicate"] += len(ts_clicks) - 1
            good = [t for t in ts_convs if ts_clicks[0] <= t <= ts_clicks[0] + window]
            counts["conversions.out_of_window"] += len(ts_convs) - len(good)
            if good:
                conversion = 1
                counts["conversions.joined"] += 1
                counts["conversions.duplicate"] += len(good) - 1
        else:
            counts["conversions.orphan"] += len(ts_convs)
        rows.append({"impression_id": iid, "scene": mine[0][1], "click": click, "conversion": conversion})
    return rows, {k: v for k, v in counts.items() if v}


def _tables(imps, clicks, convs):
    return (pa.table({"impression_id": pa.array([i for i, _, _ in imps], pa.string()),
                      "timestamp": pa.array([t for _, t, _ in imps], pa.int64()),
                      "scene": pa.array([s for _, _, s in imps], pa.string())}),
            pa.table({"impression_id": pa.array([i for i, _ in clicks], pa.string()),
                      "timestamp": pa.array([t for _, t in clicks], pa.int64()),
                      "page": pa.array(["p"] * len(clicks), pa.string())}),   # not needed by the join
            pa.table({"impression_id": pa.array([i for i, _ in convs], pa.string()),
                      "timestamp": pa.array([t for _, t in convs], pa.int64())}))


def _rows(tables):
    return [{k: r[k] for k in ("impression_id", "scene", "click", "conversion")}
            for t in tables for r in t.to_pylist()]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(imps=imp_st, clicks=event_st, convs=event_st, buckets=st.integers(1, 4))
def test_beam_join_equals_reference(imps, clicks, convs, buckets):
    want_rows, want_counts = reference_join(imps, clicks, convs, WINDOW)
    parts = [p for log, t in zip(("impressions", "clicks", "conversions"), _tables(imps, clicks, convs))
             if t.num_rows for p in partition(log, t, buckets)]
    with beam.Pipeline(runner="FnApiRunner") as p:
        rows, counts = p | beam.Create(parts, reshuffle=False) | JoinLogs(WINDOW, eval_percent=20)
        labelled = rows | beam.FlatMap(lambda kv: _rows([kv[1]]))
        assert_that(labelled, equal_to(want_rows), label="rows")
        examples = counts | "Examples" >> beam.Filter(lambda kv: kv[0].startswith("examples."))
        assert_that(counts | "Buckets" >> beam.Filter(lambda kv: not kv[0].startswith("examples."))
                    | beam.CombinePerKey(sum), equal_to(list(want_counts.items())), label="counts")
        n_examples = examples | beam.Filter(lambda kv: kv[0] in ("examples.train", "examples.eval")) | beam.Values()
        assert_that(n_examples | beam.CombineGlobally(sum), equal_to([len(want_rows)]), label="examples")
    # Every input row is in exactly one bucket.
    for log, n in (("impressions", len(imps)), ("clicks", len(clicks)), ("conversions", len(convs))):
        assert sum(v for k, v in want_counts.items() if k.startswith(log + ".")) == n


@settings(max_examples=60, deadline=None)
@given(imps=imp_st, clicks=event_st, convs=event_st)
def test_the_vectorised_join_applies_the_per_id_rules(imps, clicks, convs):
    imp_t, click_t, conv_t = _tables(imps, clicks, convs)
    got, got_counts = join_logic.join_tables(imp_t, click_t, conv_t, WINDOW)
    want, want_counts = [], collections.Counter()
    for iid in sorted({i for i, _, _ in imps} | {i for i, _ in clicks} | {i for i, _ in convs}):
        row, counts = join_logic.join_impression(
            [r for r in imp_t.to_pylist() if r["impression_id"] == iid],
            [r for r in click_t.to_pylist() if r["impression_id"] == iid],
            [r for r in conv_t.to_pylist() if r["impression_id"] == iid], WINDOW)
        want_counts.update(counts)
        if row is not None:
            want.append(row)
    key = lambda r: r["impression_id"]  # noqa: E731
    assert sorted(got.to_pylist(), key=key) == sorted(want, key=key)
    assert {k: v for k, v in got_counts.items() if v} == {k: v for k, v in want_counts.items() if v}


# --- Three-step funnels: random windows (None: no window) and parents, the impression's time included.

window_st = st.one_of(st.none(), st.integers(0, 200))


@st.composite
def funnel_st(draw):
    conversion_after = draw(st.sampled_from(["click", "cart"]))
    return join_logic.Funnel((
        join_logic.FunnelStep("clicks", "click", None, draw(window_st)),
        join_logic.FunnelStep("carts", "cart", "click", draw(window_st)),
        join_logic.FunnelStep("conversions", "conversion", conversion_after, draw(window_st))))


def reference_funnel_join(imps, events, funnel):
    """Written independently of join_logic: per impression id, each step's events sorted by time;
    ``events`` maps a log to its (id, ts) pairs."""
    counts = collections.Counter()
    rows = []
    imp_ids = {i for i, _, _ in imps}
    for step in funnel.steps:
        counts[f"{step.log}.orphan"] += sum(1 for i, _ in events[step.log] if i not in imp_ids)
    for iid in sorted(imp_ids):
        mine = sorted((ts, scene) for i, ts, scene in imps if i == iid)
        counts["impressions.joined"] += 1
        counts["impressions.duplicate"] += len(mine) - 1
        when = {None: mine[0][0]}
        row = {"impression_id": iid, "scene": mine[0][1]}
        for step in funnel.steps:
            ts = sorted(t for i, t in events[step.log] if i == iid)
            row[step.label] = 0
            if step.after not in when:
                counts[f"{step.log}.orphan"] += len(ts)
                continue
            lo = when[step.after]
            hi = float("inf") if step.window_us is None else lo + step.window_us
            good = [t for t in ts if lo <= t <= hi] if step.window_us is not None else ts
            counts[f"{step.log}.out_of_window"] += len(ts) - len(good)
            if good:
                row[step.label] = 1
                when[step.label] = good[0]
                counts[f"{step.log}.joined"] += 1
                counts[f"{step.log}.duplicate"] += len(good) - 1
        rows.append(row)
    return rows, {k: v for k, v in counts.items() if v}


def _event_table(events):
    return pa.table({"impression_id": pa.array([i for i, _ in events], pa.string()),
                     "timestamp": pa.array([t for _, t in events], pa.int64())})


LABELS = ("click", "cart", "conversion")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(imps=imp_st, clicks=event_st, carts=event_st, convs=event_st, funnel=funnel_st(), buckets=st.integers(1, 4))
def test_three_step_beam_join_equals_reference(imps, clicks, carts, convs, funnel, buckets):
    events = {"clicks": clicks, "carts": carts, "conversions": convs}
    want_rows, want_counts = reference_funnel_join(imps, events, funnel)
    tables = {"impressions": _tables(imps, [], [])[0], **{log: _event_table(ev) for log, ev in events.items()}}
    parts = [p for log, t in tables.items() if t.num_rows for p in partition(log, t, buckets)]
    with beam.Pipeline(runner="FnApiRunner") as p:
        rows, counts = p | beam.Create(parts, reshuffle=False) | JoinLogs(funnel, eval_percent=20)
        labelled = rows | beam.FlatMap(lambda kv: [{k: r[k] for k in ("impression_id", "scene") + LABELS}
                                                   for r in kv[1].to_pylist()])
        assert_that(labelled, equal_to(want_rows), label="rows")
        assert_that(counts | "Buckets" >> beam.Filter(lambda kv: not kv[0].startswith("examples."))
                    | beam.CombinePerKey(sum), equal_to(list(want_counts.items())), label="counts")
    for log, n in (("impressions", len(imps)), ("clicks", len(clicks)), ("carts", len(carts)),
                   ("conversions", len(convs))):
        assert sum(v for k, v in want_counts.items() if k.startswith(log + ".")) == n
    for row in want_rows:   # nested labels: a step happened only if its parent did
        for step in funnel.steps:
            assert row[step.label] <= (row[step.after] if step.after else 1)


@settings(max_examples=80, deadline=None)
@given(imps=imp_st, clicks=event_st, carts=event_st, convs=event_st, funnel=funnel_st())
def test_the_vectorised_three_step_join_applies_the_per_id_rules(imps, clicks, carts, convs, funnel):
    imp_t = _tables(imps, [], [])[0]
    tables = {"clicks": _event_table(clicks), "carts": _event_table(carts), "conversions": _event_table(convs)}
    got, got_counts = join_logic.join_funnel_tables(imp_t, tables, funnel)
    want, want_counts = [], collections.Counter()
    all_ids = {i for i, _, _ in imps} | {i for ev in (clicks, carts, convs) for i, _ in ev}
    for iid in sorted(all_ids):
        row, counts = join_logic.join_impression_funnel(
            [r for r in imp_t.to_pylist() if r["impression_id"] == iid],
            {log: [r for r in t.to_pylist() if r["impression_id"] == iid] for log, t in tables.items()}, funnel)
        want_counts.update(counts)
        if row is not None:
            want.append(row)
    key = lambda r: r["impression_id"]  # noqa: E731
    assert got.column_names[-3:] == list(LABELS)
    assert sorted(got.to_pylist(), key=key) == sorted(want, key=key)
    assert {k: v for k, v in got_counts.items() if v} == {k: v for k, v in want_counts.items() if v}
    ref_rows, ref_counts = reference_funnel_join(
        imps, {"clicks": clicks, "carts": carts, "conversions": convs}, funnel)
    assert sorted(want, key=key) == ref_rows
    assert {k: v for k, v in want_counts.items() if v} == ref_counts


def test_the_default_funnel_is_the_two_step_join():
    funnel = join_logic.default_funnel(WINDOW)
    assert [(s.log, s.label, s.after, s.window_us) for s in funnel.steps] == [
        ("clicks", "click", None, None), ("conversions", "conversion", "click", WINDOW)]
    imps = [("i0", 5, "a"), ("i1", 7, "b")]
    clicks, convs = [("i0", 3), ("i0", 9), ("o1", 1)], [("i0", 50), ("i0", 500), ("i1", 8)]
    assert reference_funnel_join(imps, {"clicks": clicks, "conversions": convs}, funnel) == \
        reference_join(imps, clicks, convs, WINDOW)
