"""Model server latency and throughput over loopback HTTP, batches of 1 and of 100 candidates.

    python -m benchmarks.server_latency --model-dir work/serving/ranking
    python -m benchmarks.server_latency            # trains a model on a generated day first
    python -m benchmarks.server_latency --compare bb76e3b --stalled 500

``--compare REV`` also starts the model server of git revision REV (its
``model_server/`` package, the rest of this tree) and measures both in the same
run, alternating old and new on every row (``--rounds`` times; medians), so a
noisy machine hits both alike. ``--stalled N`` adds rows measured while N
connections sit on half a request head, as a slow or hostile client leaves them.

The server (``rankpipe serve``'s code) runs in its own process; the client
sends TF Serving REST predict requests from ``--concurrency`` keep-alive
connections, in both request formats (raw feature instances and b64
tf.Examples), ``--requests`` per row after ``--warmup`` untimed ones. Both
share the machine's 2 cores, as a sidecar client would. Prints a markdown table.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import base64  # noqa: E402
import glob  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import List  # noqa: E402

import numpy as np  # noqa: E402

from model_server.predict_request import example_to_instance  # noqa: E402
from pipeline_components.orchestration.ports import free_ports  # noqa: E402
from configs import REPO_ROOT  # noqa: E402
from schemas import load_feature_spec  # noqa: E402



def prepare_model(workdir: str, impressions: int) -> tuple:
    """A served-layout model dir and eval records, from a generated day (model_quality's prep)."""
    from benchmarks.model_quality import prepare, trainer_config
    from trainer.run import train
    prep = prepare(workdir, 0.6, impressions)
    model_dir = os.path.join(prep.home, "serving_bench", "ranking")
    out = os.path.join(model_dir, "20261120")
    if not os.path.exists(os.path.join(out, "saved_model.pb")):
        train(prep.train_files, [prep.eval_files[0]], prep.transform_dir, out, trainer_config("esmm", 0, 1))
    return model_dir, prep.eval_files


def eval_records(files: List[str], n: int) -> List[bytes]:
    import tensorflow as tf
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(n)]


def raw_instance(record: bytes, _spec=load_feature_spec()) -> dict:
    """Labels and passthrough ids are not request features (the spec is read once)."""
    return example_to_instance(record, drop=_spec.labels + _spec.passthrough)


def export_model_server(rev: str, workdir: str) -> str:
    """``model_server/`` as of git revision ``rev``, in a folder to put first on PYTHONPATH."""
    out = os.path.join(workdir, f"model_server_{rev}")
    if not os.path.isdir(out):
        os.makedirs(out)
        archive = subprocess.run(["git", "archive", rev, "model_server"], cwd=REPO_ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", out], input=archive, check=True)
    return out


def start_server(model_dir: str, port: int, code_dir: str = REPO_ROOT) -> subprocess.Popen:
    code = ("import logging, sys; logging.basicConfig(level=logging.WARNING); "
            "from model_server.http import serve; "
            f"srv, stop = serve({model_dir!r}, 'ranking', port={port}); srv.serve_forever()")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys([code_dir, REPO_ROOT])))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=code_dir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/models/ranking")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("model server did not start: " + proc.stderr.read().decode()[-2000:])


def run(port: int, bodies: List[bytes], requests: int, warmup: int, concurrency: int) -> dict:
    latencies: List[float] = []
    errors = [0]
    lock = threading.Lock()
    per_thread = requests // concurrency

    def client(seed: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        for i in range(warmup // concurrency + per_thread):
            body = bodies[(seed + i) % len(bodies)]
            t = time.perf_counter()
            conn.request("POST", "/v1/models/ranking:predict", body=body,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if i >= warmup // concurrency:
                mine.append(time.perf_counter() - t)
                if resp.status != 200:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(k * 7,)) for k in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1e3
    return {"n": len(lat), "errors": errors[0], "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "rps": len(lat) / wall}


def stall(port: int, n: int) -> list:
    """n connections that sent half a request head and then nothing."""
    import socket
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /v1/models/ranking:predict HTTP/1.1\r\nHost: bench\r\nContent-Le")
        socks.append(s)
    return socks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", help="a served model directory (<serving>/<model>); default: train one")
    ap.add_argument("--eval-glob", help="gzip TFRecord eval examples (default: the prepared day's)")
    ap.add_argument("--impressions", type=int, default=200_000)
    ap.add_argument("--workdir", default="/tmp/model-quality")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--compare", metavar="REV", help="also measure the model server of this git revision")
    ap.add_argument("--rounds", type=int, default=2, help="alternations per row with --compare (medians)")
    ap.add_argument("--stalled", type=int, default=0, help="add rows with this many stalled connections open")
    args = ap.parse_args()
    if args.model_dir:
        model_dir = args.model_dir
        files = glob.glob(args.eval_glob) if args.eval_glob else []
        if not files:
            raise SystemExit("--model-dir needs --eval-glob (gzip TFRecords of raw examples) to build requests")
    else:
        model_dir, files = prepare_model(args.workdir, args.impressions)
    records = eval_records(files, 1000)
    servers = {"this tree": REPO_ROOT}
    if args.compare:
        servers = {args.compare: export_model_server(args.compare, args.workdir), "this tree": REPO_ROOT}
    ports = dict(zip(servers, free_ports(len(servers))))
    procs = {name: start_server(model_dir, ports[name], code) for name, code in servers.items()}
    rounds = args.rounds if args.compare else 1
    rows = []
    try:
        plan = []
        for batch in (1, 100):
            groups = [records[i:i + batch] for i in range(0, len(records) - batch + 1, batch)][:50]
            formats = {"raw features": [json.dumps({"instances": [raw_instance(r) for r in g]}).encode()
                                        for g in groups],
                       "b64 tf.Example": [json.dumps({"instances": [{"b64": base64.b64encode(r).decode()}
                                                                    for r in g]}).encode() for g in groups]}
            for fmt, bodies in formats.items():
                for c in args.concurrency:
                    plan.append((batch, fmt, c, 0, bodies))
                    if args.stalled and batch == 1:
                        plan.append((batch, fmt, c, args.stalled, bodies))
        for batch, fmt, c, stalled, bodies in plan:
            n = args.requests if batch == 1 else max(args.requests // 5, 100)
            results = {name: [] for name in servers}
            for _ in range(rounds):
                for name in servers:  # alternate old and new on every round
                    socks = stall(ports[name], stalled) if stalled else []
                    try:
                        results[name].append(run(ports[name], bodies, n, args.warmup, c))
                    finally:
                        for s in socks:
                            s.close()
            for name, rs in results.items():
                r = {k: float(np.median([x[k] for x in rs])) for k in ("p50", "p99", "rps")}
                r.update(n=sum(x["n"] for x in rs), errors=sum(x["errors"] for x in rs))
                rows.append((name, batch, fmt, c, stalled, r))
                print(f"[server] {name}: batch {batch} {fmt} x{c} stalled {stalled}: p50 {r['p50']:.2f} ms "
                      f"p99 {r['p99']:.2f} ms {r['rps']:.0f} req/s", flush=True)
    finally:
        for proc in procs.values():
            proc.kill()
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; server and client on the same machine; "
          f"model {model_dir}; {rounds} alternating round(s) per row, medians\n")
    print("| server | candidates per request | format | concurrent clients | stalled connections | requests | "
          "errors | p50 ms | p99 ms | requests/s | candidates/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, batch, fmt, c, stalled, r in rows:
        print(f"| {name} | {batch} | {fmt} | {c} | {stalled} | {r['n']} | {r['errors']} | {r['p50']:.2f} | "
              f"{r['p99']:.2f} | {r['rps']:.0f} | {r['rps'] * batch:,.0f} |")
    if args.compare:
        print("\n| candidates per request | format | concurrent clients | stalled | p50 new/old | p99 new/old | "
              "requests/s new/old |")
        print("|---|---|---|---|---|---|---|")
        by = {(name, b, f, c, st): r for name, b, f, c, st, r in rows}
        for batch, fmt, c, stalled, _ in plan:
            new, old = by[("this tree", batch, fmt, c, stalled)], by[(args.compare, batch, fmt, c, stalled)]
            print(f"| {batch} | {fmt} | {c} | {stalled} | {new['p50'] / old['p50']:.2f} | "
                  f"{new['p99'] / old['p99']:.2f} | {new['rps'] / old['rps']:.2f} |")


if __name__ == "__main__":
    main()
