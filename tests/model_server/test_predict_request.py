"""TF Serving request bodies: what is accepted, and the message for what is not."""
import base64
import json

import pytest
import tensorflow as tf

from model_server.predict_request import BadRequest, parse_body, raw_columns

DTYPES = {"scene": tf.string, "item_price": tf.float32, "position": tf.int64}


def body(doc):
    return json.dumps(doc).encode()


def test_row_and_columnar_raw_instances_give_the_same_columns():
    rows = [{"scene": "main_search", "item_price": 12.5, "position": 3},
            {"scene": "promo_feed", "item_price": [3.0], "position": 1}]
    kind, a = parse_body(body({"instances": rows}), 10)
    kind2, b = parse_body(body({"inputs": {"scene": ["main_search", "promo_feed"], "item_price": [12.5, 3.0],
                                           "position": [3, 1]}}), 10)
    assert kind == kind2 == "raw"
    ca, cb = raw_columns(a, DTYPES), raw_columns(b, DTYPES)
    for k in DTYPES:
        assert ca[k].dtype == DTYPES[k]
        assert ca[k].numpy().tolist() == cb[k].numpy().tolist()
    assert ca["position"].numpy().tolist() == [3, 1]


def test_b64_examples_are_decoded_in_both_formats():
    ex = tf.train.Example(features=tf.train.Features(feature={
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0]))})).SerializeToString()
    enc = base64.b64encode(ex).decode()
    assert parse_body(body({"instances": [{"b64": enc}]}), 10) == ("examples", [ex])
    assert parse_body(body({"instances": [{"examples": {"b64": enc}}]}), 10) == ("examples", [ex])
    assert parse_body(body({"inputs": {"examples": [{"b64": enc}]}}), 10) == ("examples", [ex])


@pytest.mark.parametrize("raw_body, message", [
    (b"{not json", "not valid JSON"),
    (body([1, 2]), 'exactly one of "instances"'),
    (body({"instances": [], "inputs": {}}), 'exactly one of "instances"'),
    (body({"instances": []}), "non-empty list"),
    (body({"instances": [{"b64": "@@@"}]}), "instance 0: b64 value is not valid base64"),
    (body({"instances": [{"b64": "//8="}]}), "instance 0: b64 value decodes, but not to a serialized tf.Example"),
    (body({"instances": [{"scene": "a"}, {"b64": "AA=="}]}), "instance 1: mixes a b64"),
    (body({"instances": [{"scene": "a"}, 3]}), "instance 1: expected an object"),
    (body({"inputs": {"scene": ["a", "b"], "position": [1]}}), "same number of values"),
])
def test_malformed_bodies_get_a_message_naming_the_problem(raw_body, message):
    with pytest.raises(BadRequest) as e:
        parse_body(raw_body, 10)
    assert message in str(e.value) and e.value.status == 400


def test_too_many_instances_is_413():
    with pytest.raises(BadRequest) as e:
        parse_body(body({"instances": [{"scene": "a"}] * 11}), 10)
    assert e.value.status == 413 and "limit is 10" in str(e.value)


@pytest.mark.parametrize("instance, message", [
    ({"scene": "a", "item_price": 1.0}, "instance 0: missing features ['position']"),
    ({"scene": "a", "item_price": 1.0, "position": 1, "colour": "red"}, "unknown features ['colour']"),
    ({"scene": 7, "item_price": 1.0, "position": 1}, "feature 'scene' must be a string, got 7"),
    ({"scene": "a", "item_price": "cheap", "position": 1}, "feature 'item_price' must be a number"),
    ({"scene": "a", "item_price": True, "position": 1}, "feature 'item_price' must be a number"),
    ({"scene": "a", "item_price": 1.0, "position": 1.5}, "feature 'position' must be an integer"),
    ({"scene": "a", "item_price": float("nan"), "position": 1}, "must be finite"),
])
def test_bad_feature_values_name_instance_and_feature(instance, message):
    with pytest.raises(BadRequest) as e:
        raw_columns([instance], DTYPES)
    assert message in str(e.value)
