"""TF Serving REST predict requests: parsing and validation into signature inputs.

Accepted bodies (https://www.tensorflow.org/tfx/serving/api_rest#predict_api):
- row format: ``{"instances": [{"user_id": "u1", "item_price": 12.5, ...}, ...]}``
  (raw features, sent to the ``serving_raw`` signature) or
  ``{"instances": [{"b64": "<base64 tf.Example>"}, ...]}`` (``serving_default``;
  ``{"examples": {"b64": ...}}`` is accepted too);
- columnar format: ``{"inputs": {"user_id": [...], ...}}`` or ``{"inputs": {"examples": [{"b64": ...}]}}``.
Every problem is a ``BadRequest`` whose message names the instance and the
feature, so a client can fix its request without reading server logs.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Dict, Iterable, List, Tuple

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError


class BadRequest(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def parse_body(body: bytes, max_instances: int, max_depth: int = 32) -> Tuple[str, Any]:
    """('examples', [bytes]) or ('raw', [dict]) / ('raw_columns', dict)."""
    depth = json_depth(body)
    if depth > max_depth:
        raise BadRequest(f"request body nests JSON {depth} levels deep; the limit is {max_depth} "
                         "(a predict request needs 4)")
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"request body is not valid JSON: {e}") from None
    except RecursionError:  # not reached within max_depth; a guard if the limit is set very high
        raise BadRequest("request body nests JSON too deeply") from None
    if not isinstance(doc, dict) or ("instances" in doc) == ("inputs" in doc):
        raise BadRequest('request body must be a JSON object with exactly one of "instances" (row format) '
                         'or "inputs" (columnar format)')
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list) or not instances:
            raise BadRequest('"instances" must be a non-empty list')
        _check_count(len(instances), max_instances)
        if all(_is_b64(x) for x in instances):
            return "examples", [_decode_b64(x, i) for i, x in enumerate(instances)]
        for i, x in enumerate(instances):
            if not isinstance(x, dict):
                raise BadRequest(f"instance {i}: expected an object of feature values or {{\"b64\": ...}}, "
                                 f"got {type(x).__name__}")
            if _is_b64(x):
                raise BadRequest(f"instance {i}: mixes a b64 tf.Example with raw-feature instances; "
                                 "send one kind per request")
        return "raw", instances
    inputs = doc["inputs"]
    if not isinstance(inputs, dict) or not inputs:
        raise BadRequest('"inputs" must be a non-empty object of feature -> list of values')
    if set(inputs) == {"examples"}:
        values = inputs["examples"]
        if not isinstance(values, list) or not values:
            raise BadRequest('"inputs.examples" must be a non-empty list of {"b64": ...}')
        _check_count(len(values), max_instances)
        return "examples", [_decode_b64(x, i) for i, x in enumerate(values)]
    lengths = {k: len(v) if isinstance(v, list) else -1 for k, v in inputs.items()}
    if any(n < 0 for n in lengths.values()):
        bad = sorted(k for k, n in lengths.items() if n < 0)
        raise BadRequest(f'"inputs": features {bad} must be lists of values (one per instance)')
    if len(set(lengths.values())) != 1:
        raise BadRequest(f'"inputs": every feature needs the same number of values, got {lengths}')
    _check_count(next(iter(lengths.values())), max_instances)
    n = next(iter(lengths.values()))
    return "raw", [{k: v[i] for k, v in inputs.items()} for i in range(n)]


_BRACKET_STEP = np.zeros(256, np.int8)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1


def json_depth(body: bytes) -> int:
    """The deepest nesting of [ and { outside strings, before parsing: json.loads recurses once
    per level, so 100,000 nested brackets would exhaust the stack of the thread parsing them.
    Vectorised: quotes not escaped by an odd run of backslashes delimit strings, and brackets
    outside them step the depth (about 50 us for a 100-instance request; a regex that cut the
    strings out first took five times that)."""
    opened = body.count(b"[") + body.count(b"{")
    if opened <= 1:
        return opened
    code = np.frombuffer(body, np.uint8)
    quote = code == ord('"')
    if b"\\" in body:
        index = np.arange(code.size)
        last_other = np.maximum.accumulate(np.where(code == ord("\\"), -1, index))
        run = index - 1 - np.concatenate(([-1], last_other[:-1]))  # backslashes just before each byte
        quote &= (run % 2) == 0
    step = np.where(np.cumsum(quote) % 2 == 1, 0, _BRACKET_STEP[code])
    return int(np.cumsum(step, dtype=np.int64).max(initial=0))


def _check_count(n: int, max_instances: int) -> None:
    if n > max_instances:
        raise BadRequest(f"{n} instances in one request; the limit is {max_instances} (split the request)", 413)


def _is_b64(x: Any) -> bool:
    if isinstance(x, dict) and set(x) == {"examples"}:
        x = x["examples"]
    return isinstance(x, dict) and set(x) == {"b64"}


def _decode_b64(x: Any, i: int) -> bytes:
    if isinstance(x, dict) and set(x) == {"examples"}:
        x = x["examples"]
    if not (isinstance(x, dict) and set(x) == {"b64"} and isinstance(x["b64"], str)):
        raise BadRequest(f'instance {i}: expected {{"b64": "<base64 serialized tf.Example>"}}')
    try:
        data = base64.b64decode(x["b64"], validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadRequest(f"instance {i}: b64 value is not valid base64: {e}") from None
    try:
        tf.train.Example.FromString(data)
    except DecodeError:
        raise BadRequest(f"instance {i}: b64 value decodes, but not to a serialized tf.Example") from None
    return data


def raw_columns(instances: List[Dict[str, Any]], dtypes: Dict[str, tf.DType]) -> Dict[str, tf.Tensor]:
    """Instances of raw feature values -> one tensor per feature, checked against the signature."""
    if not dtypes:
        raise BadRequest("this model version has no raw-feature signature; send b64 tf.Examples instead")
    columns: Dict[str, list] = {k: [] for k in dtypes}
    for i, inst in enumerate(instances):
        unknown = sorted(set(inst) - set(dtypes))
        if unknown:
            raise BadRequest(f"instance {i}: unknown features {unknown}; the model takes {sorted(dtypes)}")
        missing = sorted(set(dtypes) - set(inst))
        if missing:
            raise BadRequest(f"instance {i}: missing features {missing}")
        for name, dtype in dtypes.items():
            columns[name].append(_value(inst[name], dtype, i, name))
    out = {}
    for name, dtype in dtypes.items():
        if dtype == tf.string:
            out[name] = tf.constant(columns[name], tf.string)
        else:
            out[name] = tf.constant(np.asarray(columns[name], dtype=dtype.as_numpy_dtype), dtype)
    return out


def _value(v: Any, dtype: tf.DType, i: int, name: str) -> Any:
    if isinstance(v, list) and len(v) == 1:  # [value] as TF Serving clients often send
        v = v[0]
    if dtype == tf.string:
        if not isinstance(v, str):
            raise BadRequest(f"instance {i}: feature {name!r} must be a string, got {json.dumps(v)}")
        return v.encode()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadRequest(f"instance {i}: feature {name!r} must be a number, got {json.dumps(v)}")
    if dtype.is_integer:
        if float(v) != int(v):
            raise BadRequest(f"instance {i}: feature {name!r} must be an integer, got {v}")
        return int(v)
    if not np.isfinite(v):
        raise BadRequest(f"instance {i}: feature {name!r} must be finite, got {v}")
    return float(v)


def example_to_instance(record: bytes, drop: Iterable[str] = ()) -> Dict[str, Any]:
    """A serialized tf.Example as a raw-feature instance (the row format's JSON object), without
    the features in ``drop`` (labels, ids): what a client sends for an impression it logged."""
    out: Dict[str, Any] = {}
    for name, f in tf.train.Example.FromString(record).features.feature.items():
        if name in drop:
            continue
        out[name] = f.bytes_list.value[0].decode() if f.bytes_list.value else (
            float(f.float_list.value[0]) if f.float_list.value else int(f.int64_list.value[0]))
    return out
