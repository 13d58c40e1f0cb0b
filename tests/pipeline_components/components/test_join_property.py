"""Property: the Beam join equals a small pure-Python reference join on random event streams."""
import collections

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_components.components.join_beam import JoinLogs

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


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(imps=imp_st, clicks=event_st, convs=event_st)
def test_beam_join_equals_reference(imps, clicks, convs):
    want_rows, want_counts = reference_join(imps, clicks, convs, WINDOW)
    with beam.Pipeline() as p:
        keyed = {
            "impressions": p | "I" >> beam.Create(
                [(i, {"impression_id": i, "timestamp": ts, "scene": s}) for i, ts, s in imps]),
            "clicks": p | "C" >> beam.Create([(i, {"impression_id": i, "timestamp": ts}) for i, ts in clicks]),
            "conversions": p | "V" >> beam.Create([(i, {"impression_id": i, "timestamp": ts}) for i, ts in convs]),
        }
        rows, counts = keyed | JoinLogs(WINDOW)
        assert_that(rows, equal_to(want_rows), label="rows")
        assert_that(counts | beam.CombinePerKey(sum), equal_to(list(want_counts.items())), label="counts")
    # Every input row is in exactly one bucket.
    for log, n in (("impressions", len(imps)), ("clicks", len(clicks)), ("conversions", len(convs))):
        assert sum(v for k, v in want_counts.items() if k.startswith(log + ".")) == n
