"""SpanPusher: TFX's Pusher with versions from the span, and backfills kept off the served path.

Why a custom executor: TFX 1.16's Pusher names a version after the wall clock
(UNIX_TIMESTAMP is its only filesystem versioning), so a backfill of an old day
would get the newest version number and a model server would serve it, and a
rerun of a day would add a second version. Here:

- the version is the span's date as YYYYMMDD (from the ServingCheck's
  InfraBlessing, which carries the day's span), so a day has one version;
- a day older than the newest version already served goes to
  ``<serving>/backfills/<model>/<version>``, never to ``<serving>/<model>``: a
  backfill is kept for inspection (to serve it anyway, copy it into the served
  directory and pin it with ``rankpipe rollback``), but it never shadows
  today's model;
- a rerun of a day replaces that day's version atomically (copy to a hidden
  temporary directory, then rename): a server never sees half a model, and the
  directory never holds two versions for one day.

Blessing checks (model blessing and infra blessing) are the stock Pusher's.
``push`` (an execution parameter, a RuntimeParameter under Airflow) set to 0
keeps a blessed model where it is: a backfill run only to rebuild history
records "blessed, not pushed" instead of touching the serving directories.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from typing import Tuple, Union

from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx import types
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

from model_server import versions as versions_lib
from pipeline_components.spans import span_version

BACKFILLS = "backfills"
PUSH_KEY = "push"


def destination(serving_root: str, model_name: str, version: int) -> Tuple[str, str]:
    """(where a version goes, "serving" or "backfill"): the served directory unless a newer
    version is already served there."""
    served = os.path.join(serving_root, model_name)
    if any(v > version for v in versions_lib.list_versions(served)):
        return os.path.join(serving_root, BACKFILLS, model_name, str(version)), "backfill"
    return os.path.join(served, str(version)), "serving"


def replace_dir(src: str, dst: str) -> None:
    """Copies src to dst so that dst is, at every instant, either the old or the new model."""
    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(dst)}.incoming-{os.getpid()}-{time.time_ns()}")
    shutil.copytree(src, tmp)
    old = None
    if os.path.exists(dst):
        old = os.path.join(parent, f".{os.path.basename(dst)}.replaced-{time.time_ns()}")
        os.rename(dst, old)
    os.rename(tmp, dst)
    if old:
        shutil.rmtree(old, ignore_errors=True)


class Executor(pusher_executor.Executor):

    def Do(self, input_dict, output_dict, exec_properties):
        self._log_startup(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            logging.warning("model not blessed: not pushed (see the DeploymentGate report)")
            return
        if not int(exec_properties.get(PUSH_KEY, 1)):
            self._MarkNotPushed(pushed)
            pushed.set_string_custom_property("push_kind", "disabled")
            logging.warning("model blessed but not pushed: this run was started with push=false")
            return
        infra = artifact_utils.get_single_instance(input_dict[standard_component_specs.INFRA_BLESSING_KEY])
        span_date = infra.get_string_custom_property("span_date")
        if not span_date:
            raise ValueError("the infra blessing carries no span_date; SpanPusher needs the ServingCheck's output")
        custom = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}")
        version = span_version(span_date)
        target, kind = destination(custom["serving_root"], custom["model_name"], version)
        replaced = os.path.exists(target)
        replace_dir(self.GetModelPath(input_dict), target)
        logging.info("pushed %s as version %s to %s (%s%s)", span_date, version, target, kind,
                     ", replacing the earlier push of this day" if replaced else "")
        pushed.set_string_custom_property("push_kind", kind)
        self._MarkPushed(pushed, pushed_destination=target, pushed_version=str(version))


class SpanPusherSpec(standard_component_specs.PusherSpec):
    PARAMETERS = dict(standard_component_specs.PusherSpec.PARAMETERS,
                      **{PUSH_KEY: ExecutionParameter(type=int, optional=True)})


class SpanPusher(pusher_component.Pusher):
    SPEC_CLASS = SpanPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model, model_blessing, infra_blessing, serving_root: str, model_name: str,
                 push: Union[int, data_types.RuntimeParameter] = 1):
        # Pusher.__init__ builds a PusherSpec, which has no `push`: build ours instead.
        spec = SpanPusherSpec(
            model=model, model_blessing=model_blessing, infra_blessing=infra_blessing,
            custom_config=json_utils.dumps({"serving_root": serving_root, "model_name": model_name}),
            pushed_model=types.Channel(type=standard_artifacts.PushedModel),
            **{PUSH_KEY: push})
        base_component.BaseComponent.__init__(self, spec=spec)
