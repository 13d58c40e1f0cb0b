"""The local model server over real HTTP (loopback), serving day 1's pushed model.

Predictions equal offline ones, bad requests get 4xx with a message, a push
under load drops no request, and a pin rolls back.
"""
import base64
import glob
import http.client
import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from model_server import versions
from model_server.http import serve
from model_server.predict_request import example_to_instance
from pipeline_components.components.span_pusher import replace_dir
from schemas import load_feature_spec
from tests.e2e.days.conftest import DAY1
from tests.waits import wait_for

pytestmark = pytest.mark.e2e
V1, V2 = int(DAY1.strftime("%Y%m%d")), int(DAY1.strftime("%Y%m%d")) + 1
MAX_BODY = 256 * 1024


@pytest.fixture(scope="module")
def server(day1, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("serving") / "ranking")
    shutil.copytree(os.path.join(day1.serving_dir, str(V1)), os.path.join(model_dir, str(V1)))
    srv, stop = serve(model_dir, "ranking", port=0, poll_seconds=0.2, max_body_bytes=MAX_BODY, max_instances=200)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, model_dir
    stop.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def examples(home):
    files = glob.glob(os.path.join(home, "tfx", "pipeline_root", "LogJoinExampleGen", "examples", "*",
                                   "Split-eval", "*"))
    return [r.numpy() for r in tf.data.TFRecordDataset(sorted(files), compression_type="GZIP").take(100)]


def request(srv, method, path, doc=None, raw=None):
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
    body = raw if raw is not None else (json.dumps(doc).encode() if doc is not None else None)
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    return resp.status, resp.getheader("X-Model-Version"), data


def raw_instance(record: bytes, _spec=load_feature_spec()) -> dict:
    """Labels and passthrough ids are not request features (the spec is read once)."""
    return example_to_instance(record, drop=_spec.labels + _spec.passthrough)


def test_server_predictions_equal_offline_predictions(server, examples):
    srv, model_dir = server
    offline = tf.saved_model.load(os.path.join(model_dir, str(V1))).signatures["serving_default"](
        examples=tf.constant(examples))
    status, version, b64 = request(srv, "POST", "/v1/models/ranking:predict",
                                   {"instances": [{"b64": base64.b64encode(r).decode()} for r in examples]})
    assert status == 200 and version == str(V1)
    status, _, raw = request(srv, "POST", f"/v1/models/ranking/versions/{V1}:predict",
                             {"instances": [raw_instance(r) for r in examples]})
    assert status == 200
    for head in ("ctr", "cvr", "ctcvr"):
        want = offline[head].numpy().ravel()
        np.testing.assert_allclose([p[head] for p in b64["predictions"]], want, rtol=1e-6)
        np.testing.assert_allclose([p[head] for p in raw["predictions"]], want, rtol=1e-5, atol=1e-7)
    status, _, meta = request(srv, "GET", "/v1/models/ranking")
    assert status == 200 and meta["model_version_status"][0]["version"] == str(V1)
    status, _, meta = request(srv, "GET", f"/v1/models/ranking/versions/{V1}")
    assert status == 200 and [m["version"] for m in meta["model_version_status"]] == [str(V1)]


def test_bad_requests_get_a_4xx_with_a_message_never_a_stack_trace(server, examples):
    srv, _ = server
    good = raw_instance(examples[0])
    cases = [
        ("POST", "/v1/models/ranking:predict", b"{oops", 400, "not valid JSON"),
        ("POST", "/v1/models/ranking:predict", json.dumps({"instances": [dict(good, colour="red")]}).encode(),
         400, "unknown features ['colour']"),
        ("POST", "/v1/models/ranking:predict", json.dumps({"instances": [{"b64": base64.b64encode(b"\xff\xff").decode()}]})
         .encode(), 400, "not to a serialized tf.Example"),
        ("POST", "/v1/models/ranking:predict", json.dumps({"instances": [{"b64": base64.b64encode(
            tf.train.Example().SerializeToString()).decode()}]}).encode(), 400, "is required but could not be found"),
        ("POST", "/v1/models/ranking:predict", json.dumps({"instances": [good] * 201}).encode(), 413, "limit is 200"),
        ("POST", "/v1/models/ranking:predict", b" " * (MAX_BODY + 1), 413, "exceeds the limit"),
        ("POST", "/v1/models/nope:predict", json.dumps({"instances": [good]}).encode(), 404, "not found"),
        ("POST", "/v1/models/ranking/versions/19990101:predict", json.dumps({"instances": [good]}).encode(),
         404, "version 19990101"),
        ("GET", "/v2/whatever", None, 404, "unknown path"),
        ("GET", "/v1/models/ranking/versions/19990101", None, 404, "version 19990101 is not loaded"),
    ]
    for method, path, body, status, message in cases:
        got, _, doc = request(srv, method, path, raw=body)
        assert (got, message in doc["error"]) == (status, True), (path, doc)
        assert "Traceback" not in doc["error"]


def test_a_push_under_load_drops_no_request_and_the_new_version_is_served(server, examples):
    srv, model_dir = server
    body = json.dumps({"instances": [{"b64": base64.b64encode(r).decode()} for r in examples[:10]]}).encode()
    results, stop = [], threading.Event()

    def client():
        conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
        while not stop.is_set() and len(results) < 3000:
            sent = time.monotonic()
            try:
                conn.request("POST", "/v1/models/ranking:predict", body=body)
                resp = conn.getresponse()
                payload = json.loads(resp.read())
                results.append((resp.status, resp.getheader("X-Model-Version"), len(payload.get("predictions", [])),
                                sent, time.monotonic()))
            except Exception as e:  # noqa: BLE001 - a dropped connection counts as a failure
                results.append((type(e).__name__, None, 0, sent, time.monotonic()))
                conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)

    def first_v2_received():
        return min((r[4] for r in list(results) if r[1] == str(V2)), default=None)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for("requests answered by the first version", lambda: len(results) >= 20, stall_s=30, interval_s=0.1)
        replace_dir(os.path.join(model_dir, str(V1)), os.path.join(model_dir, str(V2)))  # what SpanPusher does
        # Loading the new version takes seconds; the bound is a scaled ceiling, not a pace.
        wait_for("the new version to be served", first_v2_received, stall_s=60, interval_s=0.1)
        seen = first_v2_received()
        wait_for("requests sent after the swap", lambda: sum(r[3] > seen for r in list(results)) >= 20,
                 stall_s=30, interval_s=0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    failures = [r for r in results if r[0] != 200 or r[2] != 10]
    assert results and not failures, failures[:5]
    results.sort(key=lambda r: r[3])
    assert results[0][1] == str(V1) and results[-1][1] == str(V2)
    # Once the new version has answered, every request sent later gets it (no flip back).
    assert {r[1] for r in results if r[3] > first_v2_received()} == {str(V2)}
    assert len(results) >= 50


def test_rollback_pins_a_previous_version_and_unpin_returns_to_the_newest(server, examples):
    srv, model_dir = server
    if versions.list_versions(model_dir) != [V1, V2]:
        replace_dir(os.path.join(model_dir, str(V1)), os.path.join(model_dir, str(V2)))
    body = {"instances": [{"b64": base64.b64encode(examples[0]).decode()}]}

    def served_version():
        return request(srv, "POST", "/v1/models/ranking:predict", body)[1]

    def serves(version):
        wait_for(f"version {version} to be served", lambda: served_version() == version, stall_s=30, interval_s=0.1)
        return served_version()

    assert serves(str(V2)) == str(V2)
    versions.pin(model_dir, V1)
    assert serves(str(V1)) == str(V1)
    with pytest.raises(ValueError, match="available versions"):
        versions.pin(model_dir, 19990101)
    versions.unpin(model_dir)
    assert serves(str(V2)) == str(V2)
