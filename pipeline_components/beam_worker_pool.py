"""Beam's external SDK worker pool, on one address, with workers on this interpreter.

    python -m pipeline_components.beam_worker_pool --port 50000 [--host 127.0.0.1]

Why not ``python -m apache_beam.runners.worker.worker_pool_main`` as is: it binds every
interface (``[::]``), which a one-machine setup and the tests must not do, and it starts each
SDK worker as whatever ``python`` comes first on PATH, which need not have this project's
packages. This runs Beam's own pool servicer (the same class) bound to ``--host``, with this
interpreter's directory first on PATH, so every worker imports the same code and pins as the
launcher: what the SDK image (``deploy/beam/Dockerfile``) gives the workers of a cluster.

With ``--environment_type=EXTERNAL --environment_config=HOST:PORT`` (``deploy/beam/portable.yaml``),
a portable job service asks this pool for workers; each is a separate process that shares no
memory with the launcher or the job service: DoFns arrive pickled, as on Flink or Dataflow.
``scripts/beam_services.sh`` starts and stops the pool with Beam's local job service.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

# Before anything imports TensorFlow, and inherited by every worker this pool starts: a worker
# without TF_USE_LEGACY_KERAS loads the Trainer's SavedModel with Keras 3 and the Evaluator fails
# ("File format not supported"), which is what the first portable run here did.
from configs import tf_env  # noqa: F401


def _serve(host: str, port: int) -> None:
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.runners.worker import worker_pool_main
    from apache_beam.utils import thread_pool_executor

    pool = worker_pool_main.BeamFnExternalWorkerPoolServicer(use_process=True)
    server = grpc.server(thread_pool_executor.shared_unbounded_instance(),
                         options=[("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)])
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise SystemExit(f"beam_worker_pool: cannot bind {host}:{port} (in use?)")
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    server.start()
    print(f"[beam-worker-pool] serving on {host}:{bound} (workers: {sys.executable})", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(0)
    for worker in list(pool._worker_processes.values()):  # Beam's pool keeps them here; none outlives us
        worker_pool_main.kill_process_gracefully(worker)
    print("[beam-worker-pool] stopped", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, required=True, help="port to bind (0: any free port)")
    args = parser.parse_args(argv)
    # Beam's pool starts each worker as `python -c ...`: make that this interpreter.
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    logging.basicConfig(level=logging.WARNING)
    _serve(args.host, args.port)


if __name__ == "__main__":
    main()
