from pipeline_components.components.join_logic import join_impression, split_of

H = 3600 * 1_000_000
WINDOW = 72 * H


def imp(ts=0, **kw):
    return dict({"impression_id": "x", "timestamp": ts, "scene": "main_search"}, **kw)


def ev(ts):
    return {"impression_id": "x", "timestamp": ts}


def test_impression_without_events_is_a_negative():
    row, counts = join_impression([imp()], [], [], WINDOW)
    assert row["click"] == 0 and row["conversion"] == 0 and "timestamp" not in row
    assert {k: v for k, v in counts.items() if v} == {"impressions.joined": 1}


def test_duplicate_impressions_keep_the_earliest_and_count_the_rest():
    row, counts = join_impression([imp(5, scene="shop_search"), imp(1), imp(5)], [], [], WINDOW)
    assert row["scene"] == "main_search"
    assert counts["impressions.joined"] == 1 and counts["impressions.duplicate"] == 2


def test_several_clicks_mean_click_1_and_extra_clicks_are_duplicates():
    row, counts = join_impression([imp()], [ev(10), ev(20), ev(30)], [], WINDOW)
    assert row["click"] == 1
    assert counts["clicks.joined"] == 1 and counts["clicks.duplicate"] == 2


def test_orphan_clicks_and_conversions_never_become_labels():
    row, counts = join_impression([], [ev(10)], [ev(20)], WINDOW)
    assert row is None
    assert counts["clicks.orphan"] == 1 and counts["conversions.orphan"] == 1


def test_conversion_without_click_is_an_orphan():
    row, counts = join_impression([imp()], [], [ev(20)], WINDOW)
    assert row["conversion"] == 0 and counts["conversions.orphan"] == 1


def test_attribution_window_is_measured_from_the_first_click():
    row, counts = join_impression([imp()], [ev(H), ev(50 * H)], [ev(H + WINDOW + 1)], WINDOW)
    assert row["conversion"] == 0 and counts["conversions.out_of_window"] == 1
    row, counts = join_impression([imp()], [ev(H)], [ev(H + WINDOW), ev(2 * H)], WINDOW)
    assert row["conversion"] == 1
    assert counts["conversions.joined"] == 1 and counts["conversions.duplicate"] == 1


def test_conversion_before_the_click_is_out_of_window():
    row, counts = join_impression([imp()], [ev(10 * H)], [ev(H)], WINDOW)
    assert row["click"] == 1 and row["conversion"] == 0 and counts["conversions.out_of_window"] == 1


def test_split_is_stable_and_close_to_requested_share():
    ids = [f"20261120-{i:08d}" for i in range(20000)]
    splits = [split_of(i, 20) for i in ids]
    assert splits == [split_of(i, 20) for i in ids]
    assert abs(splits.count("eval") / len(ids) - 0.20) < 0.015


def test_example_encoding_keeps_types_and_drops_nulls():
    import tensorflow as tf
    from pipeline_components.components.log_join import encode_examples
    rows = [{"impression_id": "a", "item_price": 2.5, "click": 1, "coupon": None, "extra": "x"},
            {"impression_id": "b", "item_price": 0.0, "click": 0, "coupon": None, "extra": None}]
    a, b = [tf.train.Example.FromString(x).features.feature for x in encode_examples(rows)]
    assert a["impression_id"].bytes_list.value == [b"a"]
    assert a["item_price"].float_list.value == [2.5] and a["click"].int64_list.value == [1]
    assert "coupon" not in a and a["extra"].bytes_list.value == [b"x"]
    assert "extra" not in b or not b["extra"].bytes_list.value
