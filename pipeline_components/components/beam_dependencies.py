"""Stop TFX from packaging itself for Beam workers that already run this interpreter.

Why this exists: TFX's ``BaseBeamExecutor`` calls ``dependency_utils.make_beam_dependency_flags``
on every Beam component of every run. When the Beam args name none of ``--extra_packages``,
``--setup_file``, ``--requirements_file``, ``--sdk_container_image`` (or the legacy
``--worker_harness_container_image``), it copies the installed ``tfx`` tree into a fresh
``tempfile.mkdtemp()``, builds an sdist of it (a generated setup script) and adds ``--extra_package`` to the args.
That directory (about 49 MB) is never deleted, and the sdist costs about 4 s of a 2-core
machine per component. It is only of use to remote workers that lack TFX, yet the in-process
runners (``FnApiRunner`` in memory, threads or sub-processes, and Beam's ``LOOPBACK``
environment) run their workers on this very interpreter and stage nothing. On the reference
machine a day of test runs left 2,800 such directories and filled a 250 GB disk; the CI run
that followed failed with ``No space left on device``.

The same holds for an ``EXTERNAL`` worker pool on a loopback address: on one machine it is
Beam's Python pool (``deploy/beam/portable.yaml``, ``pipeline_components/beam_worker_pool.py``),
whose workers import from their own interpreter and install nothing that is staged; on Flink
(``deploy/beam/flink.yaml``) it is a sidecar of each task manager running the SDK image, which
already holds this project and its pins. Either way TFX's sdist would be built for no one.

So, for those runners only, the args pass through unchanged. For cluster runners TFX's own
function still decides; the cluster configs in ``deploy/beam/`` name the SDK image with
``--sdk_container_image``, which makes TFX skip the sdist there too (the image holds this
project's code, which TFX's sdist would not). There is no public TFX switch for this, hence the
narrow wrapper around the one module attribute that ``BaseBeamExecutor`` looks up at call time.
"""

from __future__ import annotations

from typing import Callable, List

#: Runners whose SDK workers are this process or its children, on this interpreter.
IN_PROCESS_RUNNERS = frozenset({"FnApiRunner", "DirectRunner", "SwitchingDirectRunner",
                                "BundleBasedDirectRunner"})
#: Portable environments whose workers are this interpreter (LOOPBACK: the launcher itself).
IN_PROCESS_ENVIRONMENTS = frozenset({"LOOPBACK", "EMBEDDED"})
#: Hosts of an EXTERNAL worker pool on this machine.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def _last_flag(args: List[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    return values[-1] if values else ""


def workers_share_this_interpreter(args: List[str]) -> bool:
    """True where no worker can lack a package this process has: nothing needs staging."""
    runner = _last_flag(args, "runner")
    if runner in IN_PROCESS_RUNNERS:
        return True
    if runner not in ("PortableRunner", "FlinkRunner", "SparkRunner"):
        return False
    environment = _last_flag(args, "environment_type").upper()
    if environment == "EXTERNAL":
        return _last_flag(args, "environment_config").rsplit(":", 1)[0] in LOOPBACK_HOSTS
    return environment in IN_PROCESS_ENVIRONMENTS


def _wrap(original: Callable[[List[str]], List[str]]) -> Callable[[List[str]], List[str]]:
    def make_beam_dependency_flags(beam_pipeline_args: List[str]) -> List[str]:
        if workers_share_this_interpreter(list(beam_pipeline_args)):
            return list(beam_pipeline_args)
        return original(beam_pipeline_args)

    make_beam_dependency_flags.rankpipe_original = original  # type: ignore[attr-defined]
    return make_beam_dependency_flags


def install() -> None:
    """Idempotent; called where a process first imports this project's pipeline or Beam code."""
    from tfx.utils import dependency_utils

    current = dependency_utils.make_beam_dependency_flags
    if getattr(current, "rankpipe_original", None) is None:
        dependency_utils.make_beam_dependency_flags = _wrap(current)
