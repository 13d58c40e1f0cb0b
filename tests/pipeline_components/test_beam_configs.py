"""Beam runner options come from config: the documented runner configs parse and reach the pipeline."""
import glob
import os

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from configs import REPO_ROOT, load_config
from pipeline_components.pipeline import create_pipeline

CONFIGS = sorted(glob.glob(os.path.join(REPO_ROOT, "deploy", "beam", "*.yaml")))


def _unknown_flags(args):
    known = PipelineOptions(args).get_all_options(retain_unknown_options=False)
    return [a for a in args if a[2:].split("=")[0] not in known]


def test_the_check_catches_a_misspelt_flag():
    assert _unknown_flags(["--runner=FlinkRunner", "--flink_mastr=x:8081"]) == ["--flink_mastr=x:8081"]


def test_runner_configs_exist_for_dataflow_flink_and_spark():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {"dataflow.yaml", "flink.yaml", "spark.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_runner_config_uses_only_real_beam_options_and_reaches_the_pipeline(path, tmp_path):
    config = load_config(path, str(tmp_path))
    assert config.beam_pipeline_args, f"{path} sets no beam_pipeline_args"
    assert _unknown_flags(config.beam_pipeline_args) == []
    pipeline = create_pipeline(config, "2026-11-20")
    assert pipeline.beam_pipeline_args == config.beam_pipeline_args


@pytest.mark.parametrize("args", [[], ["--direct_num_workers=1"], ["--runner=DirectRunner"], ["--runner="]])
def test_a_config_that_would_let_beam_download_prism_is_refused(args, tmp_path):
    config = load_config(home=str(tmp_path), overrides={"beam_pipeline_args": args})
    with pytest.raises(ValueError, match="Prism"):
        config.beam_pipeline_args


@pytest.mark.parametrize("path", [None] + CONFIGS, ids=lambda p: os.path.basename(p) if p else "default")
def test_no_beam_executor_repackages_tfx_into_a_temp_dir(path, tmp_path, monkeypatch):
    """TFX copies its own tree into a never-deleted mkdtemp() and builds an sdist for every Beam
    component unless the args make that unnecessary (pipeline_components/components/beam_dependencies.py)."""
    import tempfile

    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor

    from pipeline_components.components import log_join

    config = load_config(path, str(tmp_path / "home"))
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    executor = log_join.Executor(BaseBeamExecutor.Context(beam_pipeline_args=config.beam_pipeline_args,
                                                          tmp_dir=str(tmp_path / "beam-tmp")))
    assert not [a for a in executor._beam_pipeline_args if a.startswith("--extra_package")]
    assert os.listdir(temp) == []


@pytest.mark.parametrize("args, delegated", [
    (["--runner=FnApiRunner", "--direct_running_mode=multi_processing"], False),
    (["--runner=PortableRunner", "--environment_type=LOOPBACK"], False),
    (["--runner=PortableRunner", "--environment_type=DOCKER"], True),
    (["--runner=PortableRunner", "--environment_type=EXTERNAL", "--environment_config=127.0.0.1:50000"], False),
    (["--runner=PortableRunner", "--environment_type=EXTERNAL", "--environment_config=localhost:50000"], False),
    (["--runner=PortableRunner", "--environment_type=EXTERNAL", "--environment_config=pool.svc:50000"], True),
    (["--runner=FlinkRunner"], True),
])
def test_only_runners_on_this_interpreter_skip_tfx_s_dependency_packaging(args, delegated):
    from pipeline_components.components import beam_dependencies

    calls = []
    wrapped = beam_dependencies._wrap(lambda a: calls.append(a) or a + ["--extra_package=tfx.tar.gz"])
    out = wrapped(args)
    assert bool(calls) == delegated
    assert out == (args + ["--extra_package=tfx.tar.gz"] if delegated else args)
