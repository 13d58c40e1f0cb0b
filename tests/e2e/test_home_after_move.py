"""A home made by the code before the restructuring runs its next day on the code after it.

Why: the restructuring moved every custom component to a new module path, and
module paths are written into what a home keeps: the compiled pipeline names
each executor class, and ML Metadata names each execution's type after its
component class. A team upgrading mid-week must not lose its history: the next
day has to recompile, find the earlier days' validated Examples for its training
window, compare against the model blessed before the upgrade, and push after it.

Day 1 runs through Airflow with the last commit before the move (extracted from
this repository's history with ``git archive``), day 2 through Airflow with the
code under test, on the same home.
"""
from __future__ import annotations

import datetime as dt
import glob
import os
import subprocess
import sys
import tarfile

import yaml

from configs import REPO_ROOT, load_config
from loggen import write_days
from model_server import versions
from pipeline_components.components import gate_report
from pipeline_components.orchestration import compiled
from pipeline_components.reporting import report
from schemas import load_feature_spec
from tests.waits import UNTIMED_SERVING_CHECK

# The last commit with the old layout (log_join.py, compiled.py, ... side by side in pipeline_components).
PRE_MOVE = "a0ebc42049dbcf5a8ef90709f47e47f8eddc7618"
DAY1 = dt.date(2026, 11, 20)
DAY2 = DAY1 + dt.timedelta(days=1)
IMPRESSIONS = 2_500  # small: the test is about continuity across the move, not model quality (floors 0)


def extract(commit: str, dest: str) -> str:
    archive = dest + ".tar"
    with open(archive, "wb") as fh:
        done = subprocess.run(["git", "-C", REPO_ROOT, "archive", "--format=tar", commit], stdout=fh,
                              stderr=subprocess.PIPE, text=True)
    assert done.returncode == 0, (
        f"cannot extract commit {commit} (the code before the restructuring) from {REPO_ROOT}: "
        f"{done.stderr.strip()}. This test needs the repository's history: clone without --depth")
    with tarfile.open(archive) as tar:
        tar.extractall(dest)
    return dest


def rankpipe(code_root: str, config_path: str, home: str, *args: str, log: str) -> str:
    """Runs the CLI with the code under ``code_root``; returns the temp dir its processes used."""
    temp = log + ".tmp"
    os.makedirs(temp)
    env = dict(os.environ, PYTHONPATH=code_root, TMPDIR=temp)  # the code under code_root, ahead of the installed one
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, "-m", "pipeline_components.cli", "--config", config_path,
                               "--home", home, *args], cwd=code_root, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        with open(log) as fh:
            tail = fh.read()[-3000:]
        raise AssertionError(f"rankpipe {' '.join(args)} with the code in {code_root} failed "
                             f"(exit {done.returncode}); log {log}:\n{tail}")
    return temp


def tfx_builds(temp: str) -> list:
    """TFX's ephemeral sdists of itself (pipeline_components/components/beam_dependencies.py)."""
    return glob.glob(os.path.join(temp, "*", "build", "tfx"))


def test_a_home_made_before_the_move_runs_its_next_day_after_it(tmp_path):
    old_code = extract(PRE_MOVE, str(tmp_path / "pre_move"))
    home = str(tmp_path / "home")
    write_days(os.path.join(home, "logs"), os.path.join(home, "truth"), DAY1, 2, IMPRESSIONS, progress=None)
    config_path = str(tmp_path / "lenient.yaml")
    with open(config_path, "w") as fh:
        yaml.safe_dump({"trainer": {"epochs": 1}, "serving_check": UNTIMED_SERVING_CHECK,
                        "evaluator": {"auc_floor": 0.0, "max_auc_drop": 1.0, "calibration_band": None}}, fh)

    old_temp = rankpipe(old_code, config_path, home, "airflow-run", "--dates", DAY1.isoformat(),
                        log=str(tmp_path / "day1_pre_move.log"))
    config = load_config(config_path, home)
    with open(compiled.ir_path(config), "rb") as fh:
        old_ir = fh.read()
    assert b"pipeline_components.log_join" in old_ir  # day 1 really ran the old layout

    new_temp = rankpipe(REPO_ROOT, config_path, home, "airflow-run", "--dates", DAY2.isoformat(),
                        log=str(tmp_path / "day2_after_move.log"))
    # The old code had TFX copy and sdist itself per Beam component into a temp dir never removed
    # (49 MB each); the Airflow tasks of this code, on the in-process runner, do not.
    assert tfx_builds(old_temp) and tfx_builds(new_temp) == []
    with open(compiled.ir_path(config), "rb") as fh:
        new_ir = fh.read()
    assert b"pipeline_components.components.log_join" in new_ir and b"pipeline_components.log_join." not in new_ir

    runs = {r.span_date: r for r in report.collect_runs(config)}
    assert sorted(runs) == [DAY1.isoformat(), DAY2.isoformat()]
    day1, day2 = runs[DAY1.isoformat()], runs[DAY2.isoformat()]
    assert day1.blessed and day1.pushed
    # Day 2's window holds the span the old code joined and validated ...
    assert day2.trained_on == [DAY1.isoformat(), DAY2.isoformat()]
    # ... its candidate was compared with the model the old code blessed ...
    scene = load_feature_spec(config.feature_spec_path).scene_feature
    baseline = gate_report.read_slice_metrics(day2.evaluation_uri, list(config.heads), scene, "baseline")
    assert ("overall", "ctr") in baseline and ("overall", "ctcvr") in baseline
    # ... and it was pushed after the old one, into the same served directory.
    assert day2.blessed and day2.pushed
    assert versions.list_versions(config.serving_dir) == [20261120, 20261121]
