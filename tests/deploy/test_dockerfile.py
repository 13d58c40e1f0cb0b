"""The project image's Dockerfile, read with dockerfile-parse.

Why: the reference machine cannot build it (no registry for the base image), so what a build
would catch late, and what a build would not catch at all (a secret in ENV, a venv that is not
the lock, an image the chart cannot run), is checked here against the repository.
"""
from __future__ import annotations

import fnmatch
import os
import re
import shlex
from typing import Dict, List

import pytest

from configs import REPO_ROOT, load_config
from pipeline_components.orchestration import airflow_local
from tests.deploy import sources

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|SQL_ALCHEMY_CONN|FERNET", re.I)


def _runs(stage: List[Dict]) -> List[str]:
    return [i["value"] for i in stage if i["instruction"] == "RUN"]


def _copy_sources(stage: List[Dict]) -> List[str]:
    """The build-context paths a stage copies (COPY --from=<stage> copies from a stage, not the context)."""
    out = []
    for ins in stage:
        if ins["instruction"] == "COPY":
            words = shlex.split(ins["value"])
            if not any(w.startswith("--from") for w in words):
                out += [w for w in words[:-1] if not w.startswith("--")]
    return out


def _dockerignore() -> List[str]:
    with open(os.path.join(REPO_ROOT, ".dockerignore")) as fh:
        return [line.strip() for line in fh if line.strip() and not line.startswith("#")]


def _ignored(path: str, patterns: List[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or path.split("/")[0] == p for p in patterns)


def test_two_stages_on_pinned_python_3_10_images():
    parser = sources.dockerfile()
    stages = sources.dockerfile_stages()
    assert len(stages) >= 2 and parser.is_multistage
    for image in parser.parent_images:
        repo, tag = sources.split_image(image)
        assert tag and tag != "latest", image
        assert repo.endswith("python") and tag.startswith("3.10"), image  # tfx 1.16 needs Python 3.10


def test_the_image_runs_as_the_non_root_user_of_the_chart():
    user = sources.runtime_user()
    assert user not in ("0", "root", "")
    assert int(user.split(":")[0]) == sources.values()["uid"]


def test_the_venv_is_the_lock_synced_as_setup_sh_does():
    builder, runtime = sources.dockerfile_stages()[0], sources.dockerfile_stages()[-1]
    assert "requirements.lock" in _copy_sources(builder)
    commands = [c.strip() for r in _runs(builder) for c in r.split("&&")]
    (sync,) = [c for c in commands if "uv pip sync" in c]
    assert shlex.split(sync)[-1] == "requirements.lock" and "--compile-bytecode" in shlex.split(sync)
    project = [c for c in commands if re.search(r"uv pip install .*-e \.$", c)]
    assert project and "--no-deps" in shlex.split(project[0])
    assert commands.index(sync) < commands.index(project[0])
    runs = _runs(builder)
    with open(os.path.join(REPO_ROOT, "scripts", "setup.sh")) as fh:
        setup_uv = set(re.findall(r'"(uv==[^"]+)"', fh.read()))
    assert setup_uv and set(re.findall(r'"(uv==[^"]+)"', "\n".join(runs))) == setup_uv
    assert [i["value"].split() for i in runtime if i["instruction"] == "COPY" and "--from=builder" in i["value"]] \
        == [["--from=builder", "/opt/rankpipe", "./"]], "the runtime stage takes the venv and packages as built"


def test_nothing_is_fetched_by_url_and_no_secret_is_baked_in():
    instructions = sources.dockerfile().structure
    assert not [i for i in instructions if i["instruction"] == "ADD" and "://" in i["value"]]
    password_env = load_config().metadata["mysql"]["password_env"]
    for stage in sources.dockerfile_stages():
        for ins in stage:
            if ins["instruction"] in ("ENV", "ARG"):
                names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", ins["value"])
                assert not [n for n in names if SECRET_NAME.search(n) or n == password_env], ins["value"]


def test_every_copied_path_exists_and_is_in_the_build_context():
    ignore = _dockerignore()
    for stage in sources.dockerfile_stages():
        for path in _copy_sources(stage):
            assert os.path.exists(os.path.join(REPO_ROOT, path)), path
            assert not _ignored(path, ignore), f"{path} is excluded by .dockerignore"


def test_dockerignore_keeps_the_venv_and_the_history_out():
    ignore = _dockerignore()
    for path in (".venv", ".git", "pipeline_components/__pycache__"):
        assert _ignored(path, ignore), path
    assert not _ignored("requirements.lock", ignore)


def test_the_runtime_stage_holds_every_package_and_the_dags():
    with open(os.path.join(REPO_ROOT, "pyproject.toml")) as fh:
        include = re.search(r"^include\s*=\s*\[([^\]]*)\]", fh.read(), re.M).group(1)
    packages = {p.strip(' "*') for p in include.split(",") if p.strip()}
    builder, runtime = sources.dockerfile_stages()[0], sources.dockerfile_stages()[-1]
    assert packages <= {p.rstrip("/") for p in _copy_sources(builder)}  # installed there, carried over whole
    assert "dags" in {p.rstrip("/") for p in _copy_sources(runtime)}


def test_env_is_what_the_code_reads_and_points_into_the_image(tmp_path, monkeypatch):
    env, workdir = sources.runtime_env(), sources.runtime_workdir()
    # The code finds the DAG folder and everything else from the repository root: the image keeps
    # the checkout's layout under WORKDIR.
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == os.path.join(workdir, os.path.relpath(airflow_local.DAGS_FOLDER,
                                                                                      REPO_ROOT))
    config_rel = os.path.relpath(env["RANKPIPE_CONFIG"], workdir)
    assert os.path.exists(os.path.join(REPO_ROOT, config_rel)), config_rel
    assert any(config_rel.startswith(p.rstrip("/") + "/") or config_rel == p
               for p in _copy_sources(sources.dockerfile_stages()[-1])), f"{config_rel} is not copied"
    assert env["PATH"].split(":")[0] == os.path.join(workdir, ".venv", "bin")
    assert env["TF_CPP_MIN_LOG_LEVEL"]
    # load_config reads exactly these two names.
    monkeypatch.setenv("RANKPIPE_HOME", str(tmp_path))
    monkeypatch.setenv("RANKPIPE_CONFIG", os.path.join(REPO_ROOT, config_rel))
    config = load_config()
    assert (config.home, config.path) == (str(tmp_path), os.path.join(REPO_ROOT, config_rel))
    local = airflow_local.airflow_env(config, base={"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://x@y/a"})
    assert {n for n in local if n.startswith("RANKPIPE_")} <= set(env)


def test_the_compiled_pipeline_is_built_into_the_image_after_its_inputs():
    runtime = sources.dockerfile_stages()[-1]
    order = [i["instruction"] + " " + i["value"] for i in runtime]
    (compile_at,) = [n for n, line in enumerate(order) if line.startswith("RUN") and "rankpipe compile" in line]
    env_at = max(n for n, line in enumerate(order) if line.startswith("ENV") and "RANKPIPE_CONFIG" in line)
    copies_at = max(n for n, line in enumerate(order) if line.startswith("COPY"))
    assert env_at < compile_at and copies_at < compile_at


def test_the_entrypoint_runs_the_command_the_chart_passes():
    parser = sources.dockerfile()
    (entrypoint,) = [i["value"] for i in sources.dockerfile_stages()[-1] if i["instruction"] == "ENTRYPOINT"]
    assert entrypoint.startswith("[") and "airflow" not in entrypoint  # exec form; the chart passes `bash -c ...`
    assert any("/entrypoint" in r for r in _runs(sources.dockerfile_stages()[-1]))  # the chart's probes call it
    assert parser.cmd


@pytest.mark.parametrize("image", sources.documented_images())
def test_the_documented_image_carries_the_project_version(image):
    _, tag = sources.split_image(image)
    assert tag.split("-")[0] == sources.project_version()
