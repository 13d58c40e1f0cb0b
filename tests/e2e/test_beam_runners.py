"""One day's pipeline with its Beam stages off this process gives what the in-process run gives.

The default runner (FnApiRunner in memory) lets a DoFn lean on module globals, local state and
objects that never get pickled. Two runners take those away, and each runs the whole day here:
- Beam's portable path (``deploy/beam/portable.yaml``): every stage (log join, StatisticsGen,
  Transform, Evaluator) goes as a pipeline proto to Beam's local job service, which runs it on
  SDK workers that an external worker pool starts as separate processes. This is how Flink,
  Spark and Dataflow run it. The first run here failed in the Evaluator: the workers did not
  have ``TF_USE_LEGACY_KERAS``.
- the DirectRunner's multi-process mode with 2 workers (``deploy/beam/direct_multiprocess.yaml``).
Each must give the same examples, vocabularies, statistics and metrics as the in-process run;
the services are started and stopped by ``scripts/beam_services.sh`` and leave no process behind.
"""
import datetime as dt
import glob
import os
import subprocess
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import yaml
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx import v1 as tfx

from configs import REPO_ROOT, load_config
from loggen import write_days
from pipeline_components.components import beam_dependencies
from pipeline_components.orchestration.ports import free_ports
from pipeline_components.pipeline import create_pipeline
from pipeline_components.reporting import report
from schemas import load_feature_spec
from tests.ui_process import process_group
from tests.waits import scaled

pytestmark = pytest.mark.e2e

DAY = dt.date(2026, 11, 20)
IMPRESSIONS = 3_000
SERVICES = os.path.join(REPO_ROOT, "scripts", "beam_services.sh")


def _deploy_args(name):
    with open(os.path.join(REPO_ROOT, "deploy", "beam", name)) as fh:
        return yaml.safe_load(fh)["beam_pipeline_args"]


def _run_day(home, logs, beam_args, monkeypatch):
    """The day through TFX's LocalDagRunner; TFX's temp files go to a folder of the run's own."""
    # Exact statistics (StatisticsGen samples record batches by default: a different sample each run).
    overrides = {"paths": {"logs": logs}, "trainer": {"epochs": 1}, "statistics": {"sample_rate": 1.0}}
    if beam_args is not None:
        overrides["beam_pipeline_args"] = beam_args
    config = load_config(None, home, overrides=overrides)
    temp = os.path.join(home, "temp")
    os.makedirs(temp)
    monkeypatch.setattr(tempfile, "tempdir", temp)
    beam_dependencies.install()
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, DAY.isoformat()))
    monkeypatch.undo()
    [run] = report.collect_runs(config)
    report.load_metrics(run, config.heads, load_feature_spec(config.feature_spec_path).scene_feature)
    return config, run, temp


def _example(record):
    """A tf.Example as sorted (feature, values) pairs: its bytes are not canonical (the feature
    map's order depends on the writing process's hash seed)."""
    features = tf.train.Example.FromString(record).features.feature
    return tuple(sorted((name, str(f.WhichOneof("kind")), tuple(getattr(f, f.WhichOneof("kind")).value))
                        for name, f in features.items()))


def _examples(uri):
    """{split: sorted examples}: every row with every feature, whatever the files and their order."""
    out = {}
    for folder in sorted(glob.glob(os.path.join(uri, "Split-*"))):
        out[os.path.basename(folder)] = sorted(
            _example(r.numpy()) for path in sorted(glob.glob(os.path.join(folder, "*.gz")))
            for r in tf.data.TFRecordDataset(path, compression_type="GZIP"))
    return out


def _vocabularies(config):
    [assets] = glob.glob(os.path.join(config.pipeline_root, "Transform", "transform_graph", "*",
                                      "transform_fn", "assets"))
    found = {}
    for name in sorted(os.listdir(assets)):
        with open(os.path.join(assets, name), "rb") as fh:
            found[name] = fh.read()
    return found


def _statistics(config):
    """{split: (examples, {feature: non-missing count})} from StatisticsGen."""
    out = {}
    for path in glob.glob(os.path.join(config.pipeline_root, "StatisticsGen", "statistics", "*", "Split-*",
                                       "FeatureStats.pb")):
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        with open(path, "rb") as fh:
            stats.ParseFromString(fh.read())
        [dataset] = stats.datasets
        counts = {}
        for f in dataset.features:
            counts[f.path.step[0]] = getattr(f, f.WhichOneof("stats")).common_stats.num_non_missing
        assert dataset.num_examples and len(counts) > 5, path
        out[os.path.basename(os.path.dirname(path))] = (dataset.num_examples, counts)
    return out


def _same_metrics(got, want):
    assert set(got) == set(want)
    for key in want:
        assert set(got[key]) == set(want[key]), key
        for name, value in want[key].items():
            assert np.isclose(got[key][name], value, rtol=1e-6, atol=1e-9, equal_nan=True), (key, name)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam-runners-logs")
    write_days(str(root / "logs"), str(root / "truth"), DAY, 1, IMPRESSIONS, progress=None)
    return str(root / "logs")


@pytest.fixture(scope="module")
def in_process(logs, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        config, run, _ = _run_day(str(tmp_path_factory.mktemp("in-process")), logs, None, mp)
    return {"examples": _examples(run.examples_uri), "vocabularies": _vocabularies(config),
            "statistics": _statistics(config), "metrics": run.metrics}


def _assert_same_day(config, run, reference):
    examples = _examples(run.examples_uri)
    assert sorted(examples) == ["Split-eval", "Split-train"]
    assert sum(map(len, examples.values())) == IMPRESSIONS
    assert examples == reference["examples"]
    vocabularies = _vocabularies(config)
    assert vocabularies and all(vocabularies.values())
    assert vocabularies == reference["vocabularies"]
    assert _statistics(config) == reference["statistics"]
    assert run.metrics and ("overall", "ctr") in run.metrics
    _same_metrics(run.metrics, reference["metrics"])


def test_a_day_on_beams_portable_runner_with_an_external_worker_pool(logs, in_process, tmp_path, monkeypatch):
    folder = str(tmp_path / "services")
    job_port, pool_port = free_ports(2)
    start = subprocess.run(["bash", SERVICES, "start", folder, str(job_port), str(pool_port)],
                           capture_output=True, text=True, timeout=scaled(300))
    assert start.returncode == 0, start.stderr
    pids = {name: int(open(os.path.join(folder, f"{name}.pid")).read())
            for name in ("beam-job-service", "beam-worker-pool")}
    try:
        args = [a.replace("localhost:8099", f"localhost:{job_port}").replace("127.0.0.1:50000", f"127.0.0.1:{pool_port}")
                for a in _deploy_args("portable.yaml")]
        assert f"--job_endpoint=localhost:{job_port}" in args and f"--environment_config=127.0.0.1:{pool_port}" in args
        config, run, temp = _run_day(str(tmp_path / "home"), logs, args, monkeypatch)
    finally:
        stop = subprocess.run(["bash", SERVICES, "stop", folder], capture_output=True, text=True,
                              timeout=scaled(120))
    assert stop.returncode == 0, stop.stderr
    assert {name: process_group(pid) for name, pid in pids.items()} == {name: [] for name in pids}

    # The stages really ran on the pool's workers: the job service asked for them, the pool started them.
    with open(os.path.join(folder, "beam-job-service.log")) as fh:
        requests = fh.read().count(f"Requesting worker at 127.0.0.1:{pool_port}")
    with open(os.path.join(folder, "beam-worker-pool.log")) as fh:
        started = fh.read().count("Starting worker with command")
    assert requests >= 4 and started >= 4, (requests, started)  # join, statistics, Transform, Evaluator
    # The workers are this venv and install nothing staged: TFX built no sdist of itself.
    assert not glob.glob(os.path.join(temp, "*", "build", "tfx"))
    _assert_same_day(config, run, in_process)


def test_a_day_on_the_multi_process_direct_runner_with_two_workers(logs, in_process, tmp_path, monkeypatch):
    args = [a.replace("--direct_num_workers=0", "--direct_num_workers=2")
            for a in _deploy_args("direct_multiprocess.yaml")]
    assert "--direct_running_mode=multi_processing" in args and "--direct_num_workers=2" in args
    config, run, _ = _run_day(str(tmp_path / "home"), logs, args, monkeypatch)
    _assert_same_day(config, run, in_process)
