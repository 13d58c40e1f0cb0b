"""`rankpipe serve` stops gracefully on SIGTERM under load: it stops accepting, answers every
request it had admitted (one of them still waiting for its body when the signal arrives), and
exits 0. The server's own count of admitted requests must equal the 200s the clients received."""
import json
import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from configs import REPO_ROOT
from pipeline_components.orchestration.ports import free_ports
from tests.model_server.server_helpers import connect, metrics, post, predict_body, read_response, save_tiny_model
from tests.waits import scaled, wait_for

PREDICT = "/v1/models/ranking:predict"


@pytest.fixture
def server_process(tmp_path):
    home = tmp_path / "home"
    save_tiny_model(str(home / "serving" / "ranking"))
    [port] = free_ports(1)
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline_components.cli", "--home", str(home), "serve",
                             "--port", str(port)], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    address = ("127.0.0.1", port)

    def up():
        try:
            return metrics(address)['model_server_model_version{model="ranking"}'] == 20261120
        except OSError:
            return False

    wait_for("rankpipe serve to load the model", up, stall_s=120, interval_s=0.2,
             failure=lambda: proc.poll() is not None and f"exited {proc.returncode}: {_text(log)[-2000:]}")
    yield proc, address, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()


def _text(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()


def test_sigterm_during_load_answers_every_admitted_request_then_exits(server_process):
    proc, address, log = server_process
    body = predict_body(5)
    outcomes, stop = [], threading.Event()

    def client():
        while not stop.is_set():
            try:
                with connect(address, timeout=scaled(60)) as s:
                    s.sendall(post(PREDICT, body))
                    status, _, reply = read_response(s)
            except OSError as e:     # refused / reset: the server never admitted it
                outcomes.append(type(e).__name__)
                if isinstance(e, ConnectionRefusedError):
                    return
                continue
            outcomes.append(status if status is None or status != 200 or
                            len(json.loads(reply)["predictions"]) == 5 else "bad body")

    # One request is admitted and waits for the end of its body across the signal.
    held = connect(address, timeout=scaled(60))
    held.sendall(post(PREDICT, body)[:-4])
    wait_for("the held request to be admitted",
             lambda: metrics(address)['model_server_in_flight_requests{model="ranking"}'] >= 1,
             stall_s=30, interval_s=0.05)
    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    wait_for("load to flow", lambda: outcomes.count(200) >= 50, stall_s=60, interval_s=0.05,
             progress=lambda: len(outcomes))
    proc.send_signal(signal.SIGTERM)

    def refused():
        try:
            connect(address, timeout=5).close()
        except ConnectionRefusedError:
            return True
        return False

    wait_for("the server to stop accepting", refused, stall_s=60, interval_s=0.05)
    held.sendall(post(PREDICT, body)[-4:])
    status, headers, reply = read_response(held)
    held.close()
    assert status == 200 and len(json.loads(reply)["predictions"]) == 5
    assert headers["connection"] == "close"
    stop.set()
    for t in threads:
        t.join()
    assert proc.wait(timeout=scaled(60)) == 0
    text = _text(log)
    m = re.search(r"model server stopped: admitted=(\d+) answered=(\d+) in_flight_at_stop=(\d+)", text)
    assert m, text[-2000:]
    admitted, answered, at_stop = map(int, m.groups())
    got = outcomes.count(200) + 1  # the held request
    assert set(outcomes) <= {200, "ConnectionRefusedError", "ConnectionResetError", "BrokenPipeError", None}, \
        set(outcomes)
    # Every request the server took on was answered, and only those: nothing admitted was dropped.
    assert admitted == answered == got, (admitted, answered, got)
    assert at_stop >= 1
    assert "SIGTERM: no new connections" in text
