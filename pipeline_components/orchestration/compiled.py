"""The compiled pipeline (TFX IR) that the Airflow DAGs are built from, readable without TFX.

Why: TFX's ``AirflowDagRunner`` builds a DAG from component objects, whose
modules import TFX (18 s here) and TensorFlow (8 s); Airflow parses DAG files
every 30 s in the scheduler, in the web server and again in every task
process, so a 27 s parse kept a core busy and added minutes to each run. The
pipeline is compiled once into TFX's intermediate representation (the
protobuf that LocalDagRunner and the Kubeflow/Vertex runners execute), and a
DAG file only reads it: ``pipeline_pb2`` imports in 0.2 s. ``rankpipe
compile`` writes it, and every ``rankpipe`` command that starts Airflow
recompiles when the fingerprint (config, schemas, pipeline code, home) moved.

A stale or missing compiled pipeline is an import error of the DAG file that
says which command to run, never a silently old pipeline.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from typing import Dict, List, Optional

from configs import DEFAULT_CONFIG, REPO_ROOT, PipelineConfig

RESOLVER_TYPE = "tfx.dsl.components.common.resolver.Resolver"
# What the IR is compiled from: the factory, the run-date vocabulary, every component, and the
# loader that turns the YAML into settings. Orchestration, reporting and the CLI run or read the
# pipeline without defining it, so editing them keeps the compiled pipeline current.
PIPELINE_SOURCES = ("configs/__init__.py", "pipeline_components/pipeline.py",
                    "pipeline_components/eval_config.py", "pipeline_components/spans.py",
                    "pipeline_components/components/*.py", "schemas/*.py", "schemas/**/*.yaml")


def pipeline_sources() -> List[str]:
    return [f for pattern in PIPELINE_SOURCES
            for f in sorted(glob.glob(os.path.join(REPO_ROOT, pattern), recursive=True))]


class CompiledPipelineError(RuntimeError):
    pass



def ir_path(config: PipelineConfig) -> str:
    return os.path.join(config.home, "airflow", "compiled", f"{config.pipeline_name}.pb")


def _meta_path(config: PipelineConfig) -> str:
    return ir_path(config)[:-3] + ".json"


def fingerprint(config: PipelineConfig) -> str:
    """What the IR depends on: the config file, the schemas it names, the pipeline code, the home."""
    h = hashlib.sha256()
    h.update(config.home.encode())
    files = [DEFAULT_CONFIG, config.path, config.raw_events_path, config.feature_spec_path, config.tfdv_schema_path]
    if config.input["kind"] == "samples":
        files.append(config.input["samples"]["schema"])
    files += pipeline_sources()
    for path in files:
        h.update(path.encode())
        with open(path, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()[:16]


def write(config: PipelineConfig, serialized_ir: bytes) -> str:
    path = ir_path(config)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for target, data in ((path, serialized_ir),
                         (_meta_path(config), json.dumps({"fingerprint": fingerprint(config)}).encode())):
        tmp = f"{target}.tmp-{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    return path


def is_current(config: PipelineConfig) -> bool:
    try:
        with open(_meta_path(config)) as fh:
            return json.load(fh)["fingerprint"] == fingerprint(config) and os.path.exists(ir_path(config))
    except (OSError, ValueError, KeyError):
        return False


def load(config: PipelineConfig):
    """The pipeline IR; an error naming the fix when it is missing or older than the config/code."""
    from tfx.proto.orchestration import pipeline_pb2
    path = ir_path(config)
    if not is_current(config):
        state = "is older than the config, schemas or pipeline code" if os.path.exists(path) else "does not exist"
        raise CompiledPipelineError(
            f"the compiled pipeline {path} {state}: run `rankpipe compile` (with the same --config/--home or "
            f"RANKPIPE_CONFIG/RANKPIPE_HOME as Airflow), or start Airflow through `rankpipe ui`, which compiles it")
    ir = pipeline_pb2.Pipeline()
    with open(path, "rb") as fh:
        ir.ParseFromString(fh.read())
    return ir


@dataclasses.dataclass
class Task:
    """One Airflow task: a component node, preceded by the resolver nodes only it runs first."""
    task_id: str
    node_ids: List[str]
    upstream: List[str]


def task_layout(ir) -> List[Task]:
    """Tasks in topological order. A resolver node runs inside the task of its first consumer:
    it is a metadata query of milliseconds, and a task of its own would cost a process that
    imports TensorFlow (~20 s). Rerunning the consumer re-resolves its inputs, as it should."""
    nodes = [n.pipeline_node for n in ir.nodes]
    order = {n.node_info.id: i for i, n in enumerate(nodes)}
    owner: Dict[str, str] = {}
    for n in nodes:
        if n.node_info.type.name != RESOLVER_TYPE:
            owner[n.node_info.id] = n.node_info.id
    for n in nodes:
        if n.node_info.type.name == RESOLVER_TYPE:
            consumers = sorted(n.downstream_nodes, key=order.__getitem__)
            if not consumers:
                raise CompiledPipelineError(f"resolver {n.node_info.id} has no consumer")
            owner[n.node_info.id] = consumers[0]
    tasks: Dict[str, Task] = {}
    for n in nodes:
        task_id = owner[n.node_info.id]
        task = tasks.setdefault(task_id, Task(task_id, [], []))
        task.node_ids.append(n.node_info.id)
    for task in tasks.values():
        ups = {owner[u] for nid in task.node_ids for u in nodes[order[nid]].upstream_nodes} - {task.task_id}
        task.upstream = sorted(ups, key=lambda t: order[t])
        # Resolvers first, then the component, in the pipeline's own order.
        task.node_ids.sort(key=lambda nid: (nid == task.task_id, order[nid]))
    return sorted(tasks.values(), key=lambda t: order[t.task_id])


def node_ids(ir) -> List[str]:
    return [n.pipeline_node.node_info.id for n in ir.nodes]


def find_node(ir, node_id: str):
    for n in ir.nodes:
        if n.pipeline_node.node_info.id == node_id:
            return n.pipeline_node
    raise CompiledPipelineError(f"no node {node_id!r} in the compiled pipeline; nodes: {node_ids(ir)}")


def compile_pipeline(config: PipelineConfig, force: bool = False) -> Optional[str]:
    """Compiles (imports TFX) unless the compiled pipeline is current; returns its path if written."""
    if not force and is_current(config):
        return None
    from tfx.dsl.compiler import compiler

    from pipeline_components.pipeline import create_pipeline
    from pipeline_components.spans import push_parameter, run_date_parameter
    pipeline = create_pipeline(config, run_date_parameter(), push=push_parameter(), with_secrets=False)
    return write(config, compiler.Compiler().compile(pipeline).SerializeToString())
