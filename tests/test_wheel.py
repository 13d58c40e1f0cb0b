"""A non-editable install works: the wheel carries every package the CLI imports, and its data files.

Why a test: the development venv installs the project in editable mode, so a
package missing from ``pyproject.toml`` (``model_server`` and ``configs`` once
were) goes unnoticed until someone installs the wheel. The scratch venv gets
the dependencies from the project venv's site-packages (nothing is downloaded)
but not the repository itself: the editable install's path is taken back out,
and the commands run outside the repository.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from configs import REPO_ROOT


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    dist, source = root / "dist", root / "source"
    # A clean copy: setuptools reuses a build/ folder, which would hide a package missing from pyproject.toml.
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "work", "build", "*.egg-info", "__pycache__", "results", "datasets"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "-w", str(dist), str(source)], check=True, cwd=root)
    [wheel] = list(dist.glob("ranking_pipeline-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    uv = os.path.join(os.path.dirname(sys.executable), "uv")
    subprocess.run([uv, "pip", "install", "--quiet", "--offline", "--no-deps", "--python", str(python), str(wheel)],
                   check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    deps = sysconfig.get_paths()["purelib"]
    with open(os.path.join(site, "zz_project_deps.pth"), "w") as fh:
        fh.write(f"import os, site, sys; site.addsitedir({deps!r}); "
                 f"sys.path[:] = [p for p in sys.path if os.path.realpath(p) != {os.path.realpath(REPO_ROOT)!r}]\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RANKPIPE_CONFIG", "RANKPIPE_HOME")}
    return venv, root, env


def run(scratch, *args):
    venv, cwd, env = scratch
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


def test_rankpipe_help_lists_every_command_from_the_wheel(scratch):
    out = run(scratch, "rankpipe", "--help")
    assert out.returncode == 0, out.stderr
    for command in ("generate-logs", "run", "airflow-run", "report", "vocab", "serve", "rollback", "compile", "ui",
                    "demo"):
        assert command in out.stdout
    vocab = run(scratch, "rankpipe", "vocab", "--help")
    assert vocab.returncode == 0 and "--transform-graph" in vocab.stdout, vocab.stderr


def test_the_installed_packages_come_from_the_wheel_with_their_data(scratch):
    venv = scratch[0]
    code = ("import configs, model_server, pipeline_components.orchestration.compiled, schemas, trainer; "
            "c = configs.load_config(); "
            "print(configs.__file__); print(c.pipeline_name); print(len(schemas.load_feature_spec(c.feature_spec_path)"
            ".features)); print(schemas.scenes(c.raw_events_path)[0])")
    out = run(scratch, "python", "-c", code)
    assert out.returncode == 0, out.stderr
    path, name, n_features, scene = out.stdout.split()
    assert path.startswith(str(venv)) and not path.startswith(REPO_ROOT)
    assert name == "ranking_daily" and int(n_features) > 0 and scene
