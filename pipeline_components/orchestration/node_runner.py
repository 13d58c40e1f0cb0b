"""Runs compiled pipeline nodes for one Airflow task: bind the run's parameters, launch each node.

Launching is TFX's own: the portable ``Launcher`` with the IR's deployment
config, exactly what LocalDagRunner does for each node; this module only adds
what an Airflow task needs around it:

- the runtime parameters come from the Airflow run: ``run_date`` (the logical
  date, or the trigger's/backfill's conf), ``push`` and ``pipeline-run-id`` (the
  Airflow run id, so every task of a run shares one TFX pipeline-run context);
- a task that runs again in the same Airflow run (a cleared task or day)
  really runs again: TFX executes a node once per pipeline-run context and
  exits without running on a second launch, so a rerun executes in a new
  context ``<run_id>~2`` (see ``place_attempt``), its inputs read from the
  attempt in which each producer last succeeded, and the outputs of its earlier
  attempt are marked superseded (MLMD state MARKED_FOR_DELETION, custom property
  ``superseded_in_run``), so resolvers and the next day see one artifact per
  output. Lineage stays: the old artifacts and executions remain in MLMD;
- a failure is logged as one line that names the node, the day and the reason
  before the traceback, so the task log's first error line is actionable.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)

import logging  # noqa: E402
import time  # noqa: E402
from typing import Dict, Iterable, List, Optional, Tuple  # noqa: E402

from ml_metadata.proto import metadata_store_pb2  # noqa: E402

from configs import load_config  # noqa: E402
from pipeline_components.orchestration import compiled  # noqa: E402

log = logging.getLogger("rankpipe.node_runner")


def _replace_placeholder(message, placeholder: str, value: str) -> int:
    """Replaces string fields equal to ``placeholder`` anywhere in a proto; returns how many."""
    from google.protobuf import descriptor
    count = 0
    for field, val in message.ListFields():
        if field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                items = val.values() if field.message_type.fields_by_name["value"].message_type else []
                for item in items:
                    count += _replace_placeholder(item, placeholder, value)
            elif field.label == descriptor.FieldDescriptor.LABEL_REPEATED:
                for item in val:
                    count += _replace_placeholder(item, placeholder, value)
            else:
                count += _replace_placeholder(val, placeholder, value)
        elif field.type == descriptor.FieldDescriptor.TYPE_STRING and field.label != descriptor.FieldDescriptor.LABEL_REPEATED:
            if val == placeholder:
                setattr(message, field.name, value)
                count += 1
    return count


def bind(ir, run_date: str, run_id: str, push: bool) -> None:
    """Binds this run's values into the IR (in place)."""
    from tfx.dsl.compiler import constants
    from tfx.orchestration.portable import runtime_parameter_utils

    from pipeline_components.spans import PUSH_PARAM, RUN_DATE_PARAM, RUN_DATE_PLACEHOLDER, parse_run_date
    run_date = parse_run_date(run_date).isoformat()
    runtime_parameter_utils.substitute_runtime_parameter(ir, {
        constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id,
        RUN_DATE_PARAM: run_date,
        PUSH_PARAM: int(bool(push)),
    })
    _replace_placeholder(ir, RUN_DATE_PLACEHOLDER, run_date)


ATTEMPT_SEP = "~"
_DONE = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)


def attempt_name(run_id: str, attempt: int) -> str:
    return run_id if attempt == 1 else f"{run_id}{ATTEMPT_SEP}{attempt}"


def attempt_number(context_name: str, run_id: str) -> Optional[int]:
    if context_name == run_id:
        return 1
    prefix = run_id + ATTEMPT_SEP
    suffix = context_name[len(prefix):]
    return int(suffix) if context_name.startswith(prefix) and suffix.isdigit() else None


def successful_attempts(store, pipeline_name: str, node_id: str, run_id: str) -> Dict[int, List[int]]:
    """{attempt: [execution ids]} of this node's successful executions in this Airflow run."""
    node_ctx = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    if node_ctx is None:
        return {}
    run_type_id = store.get_context_type("pipeline_run").id
    out: Dict[int, List[int]] = {}
    for e in store.get_executions_by_context(node_ctx.id):
        if e.last_known_state not in _DONE:
            continue
        for ctx in store.get_contexts_by_execution(e.id):
            k = attempt_number(ctx.name, run_id) if ctx.type_id == run_type_id else None
            if k is not None:
                out.setdefault(k, []).append(e.id)
    return out


def _pipeline_run_queries(node):
    """(producer node id, context query) for every input channel's pipeline-run query."""
    for spec in node.inputs.inputs.values():
        for channel in spec.channels:
            for query in channel.context_queries:
                if query.type.name == "pipeline_run":
                    yield channel.producer_node_query.id, query


def place_attempt(store, pipeline_name: str, node, run_id: str) -> Tuple[int, Dict[int, List[int]]]:
    """Decides which attempt of the run this node executes in, and points its inputs at the
    attempt in which each producer last succeeded (in place). TFX runs a node at most once per
    pipeline-run context (a second launch in the same context exits without running), so a
    rerun (a cleared task) gets a new context, ``<run_id>~2``, and its downstream tasks follow.
    Returns the attempt and this node's earlier successful attempts (``successful_attempts``)."""
    producers = {}
    for producer, query in _pipeline_run_queries(node):
        if producer not in producers:
            done = successful_attempts(store, pipeline_name, producer, run_id)
            producers[producer] = max(done) if done else None
        if producers[producer] is not None:
            query.name.field_value.string_value = attempt_name(run_id, producers[producer])
    attempt = max([k for k in producers.values() if k] + [1])
    mine = successful_attempts(store, pipeline_name, node.node_info.id, run_id)
    while attempt in mine:
        attempt += 1
    for ctx in node.contexts.contexts:
        if ctx.type.name == "pipeline_run":
            ctx.name.field_value.string_value = attempt_name(run_id, attempt)
    return attempt, mine


def retire_earlier_attempts(store, node_id: str, run_id: str, attempt: int, earlier: Dict[int, List[int]]) -> int:
    """Marks the outputs of this node's earlier successful attempts (``place_attempt``'s) as superseded."""
    ids = [e for k, es in earlier.items() if k < attempt for e in es]
    if not ids:
        return 0
    from tfx.orchestration.portable.mlmd import event_lib
    artifact_ids = [ev.artifact_id for ev in store.get_events_by_execution_ids(ids)
                    if event_lib.is_valid_output_event(ev)]
    artifacts = [a for a in store.get_artifacts_by_id(artifact_ids) if a.state == a.LIVE]
    for a in artifacts:
        a.state = a.MARKED_FOR_DELETION
        a.custom_properties["superseded_in_run"].string_value = attempt_name(run_id, attempt)
    if artifacts:
        store.put_artifacts(artifacts)
        log.info("%s reruns in %s: %d output(s) of its earlier attempt superseded (ids %s)",
                 node_id, attempt_name(run_id, attempt), len(artifacts), [a.id for a in artifacts])
    return len(artifacts)


class NodeDidNotSucceed(RuntimeError):
    """TFX's launcher returns, instead of raising, when inputs do not resolve or are missing;
    an Airflow task must fail then, or downstream tasks would run on nothing."""


def root_cause(error: BaseException) -> BaseException:
    """The innermost cause: TFX wraps a strategy's or executor's error in its own."""
    seen = set()
    while (error.__cause__ or error.__context__) is not None and id(error) not in seen:
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return error


def one_line_reason(node_id: str, run_date: str, error: BaseException) -> str:
    if not isinstance(error, NodeDidNotSucceed):
        error = root_cause(error)
    text = " ".join(str(error).split()) or type(error).__name__
    kind = "" if isinstance(error, NodeDidNotSucceed) else f"{type(error).__name__}: "
    return f"{node_id} failed for run_date {run_date}: {kind}{text}"


class _LastError(logging.Handler):
    """Keeps the last error TFX logged (the launcher logs input-resolution errors and returns)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.message: Optional[str] = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            cause = root_cause(record.exc_info[1])
            self.message = f"{type(cause).__name__}: {cause}"
        else:
            self.message = record.getMessage()


def check_succeeded(store, node_id: str, execution_info, last_error: Optional[str]) -> None:
    execution_id = getattr(execution_info, "execution_id", None)
    if execution_id is None:
        raise NodeDidNotSucceed(
            "TFX skipped the node: an input it needs has no artifact in this run; check the upstream "
            "tasks of this run (a cleared upstream task must run again before this one)")
    [execution] = store.get_executions_by_id([execution_id])
    if execution.last_known_state not in _DONE:
        reason = last_error or "see the error above"
        raise NodeDidNotSucceed(f"execution {execution_id} ended {execution.State.Name(execution.last_known_state)}: "
                                f"{reason}")


def run_nodes(node_ids: Iterable[str], run_date: str, run_id: str, push: bool = True,
              config_path: Optional[str] = None, home: Optional[str] = None) -> None:
    from tfx.orchestration import metadata
    from tfx.orchestration.local import runner_utils
    from tfx.orchestration.portable import launcher

    from pipeline_components.components import beam_dependencies

    beam_dependencies.install()
    config = load_config(config_path, home)
    ir = compiled.load(config)
    bind(ir, run_date, run_id, push)
    deployment = runner_utils.extract_local_deployment_config(ir)
    which = deployment.metadata_connection_config.WhichOneof("connection_config")
    connection = getattr(deployment.metadata_connection_config, which)
    if which == "database_connection_config" and connection.HasField("mysql") and not connection.mysql.password:
        connection.mysql.password = config.mlmd_password()  # the compiled pipeline holds no secret
    for node_id in node_ids:
        node = compiled.find_node(ir, node_id)
        runtime_spec = type(ir.runtime_spec)()
        runtime_spec.CopyFrom(ir.runtime_spec)
        t0 = time.time()
        try:
            with metadata.Metadata(connection) as m:
                attempt, earlier = place_attempt(m.store, ir.pipeline_info.id, node, run_id)
                if node.node_info.type.name != compiled.RESOLVER_TYPE:
                    retire_earlier_attempts(m.store, node_id, run_id, attempt, earlier)
            runtime_spec.pipeline_run_id.field_value.string_value = attempt_name(run_id, attempt)
            errors = _LastError()
            logging.getLogger().addHandler(errors)
            try:
                info = launcher.Launcher(
                    pipeline_node=node,
                    mlmd_connection=metadata.Metadata(connection),
                    pipeline_info=ir.pipeline_info,
                    pipeline_runtime_spec=runtime_spec,
                    executor_spec=runner_utils.extract_executor_spec(deployment, node_id),
                    custom_driver_spec=runner_utils.extract_custom_driver_spec(deployment, node_id),
                ).launch()
            finally:
                logging.getLogger().removeHandler(errors)
            with metadata.Metadata(connection) as m:
                check_succeeded(m.store, node_id, info, errors.message)
        except Exception as e:
            log.error("%s", one_line_reason(node_id, run_date, e))
            raise
        log.info("%s finished for run_date %s in %.1fs", node_id, run_date, time.time() - t0)
