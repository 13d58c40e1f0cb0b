"""The pipeline configuration: one YAML file (``configs/pipeline.yaml``) plus the home directory.

Everything a run needs that is not code lives here, so a new scene, head,
threshold or model size is a config change. ``configs/pipeline.yaml`` holds
every default; a user's file (``--config``) only overrides what it names.
"""
from __future__ import annotations

from configs import tf_env  # noqa: F401  (before anything imports TensorFlow)

import copy
import dataclasses
import os
from typing import Any, Dict, List, Optional

import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO_ROOT, "configs", "pipeline.yaml")


@dataclasses.dataclass
class PipelineConfig:
    raw: Dict[str, Any]
    home: str
    path: str

    @property
    def pipeline_name(self) -> str:
        return self.raw["pipeline_name"]

    @property
    def model_name(self) -> str:
        return self.raw["model_name"]

    def _path(self, key: str) -> str:
        p = self.raw["paths"][key]
        return p if os.path.isabs(p) else os.path.join(self.home, p)

    @property
    def logs_root(self) -> str:
        return self._path("logs")

    @property
    def evidence_root(self) -> str:
        return self._path("evidence")

    @property
    def truth_root(self) -> str:
        return os.path.join(self.home, "truth")

    @property
    def pipeline_root(self) -> str:
        return self._path("pipeline_root")

    @property
    def metadata_path(self) -> str:
        return self._path("metadata")

    @property
    def metadata(self) -> Dict[str, Any]:
        return copy.deepcopy(self.raw["metadata"])

    @property
    def metadata_backend(self) -> str:
        backend = self.metadata["backend"]
        if backend not in ("sqlite", "mysql"):
            raise ValueError(f"metadata.backend must be sqlite or mysql, got {backend!r}")
        return backend

    def mlmd_password(self) -> str:
        name = self.metadata["mysql"]["password_env"]
        password = os.environ.get(name)
        if password is None:
            raise ValueError(f"ML Metadata is on MySQL (metadata.backend: mysql) but ${name} is not set: export the "
                             f"ML Metadata user's password as {name} (scripts/databases.sh prints it)")
        return password

    def metadata_connection_config(self, with_password: bool = True):
        """ML Metadata's connection: SQLite at paths.metadata (default) or MySQL/MariaDB. The
        password is left out where the config is stored (the compiled pipeline) and filled in
        from the environment where it is used."""
        from ml_metadata.proto import metadata_store_pb2
        cfg = metadata_store_pb2.ConnectionConfig()
        if self.metadata_backend == "sqlite":
            cfg.sqlite.filename_uri = self.metadata_path
            cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
            return cfg
        mysql = self.metadata["mysql"]
        missing = [k for k in ("database", "user") if not mysql.get(k)]
        if missing:
            raise ValueError(f"metadata.backend is mysql but metadata.mysql has no {' or '.join(missing)} "
                             f"(configs/production.yaml shows a complete section)")
        cfg.mysql.host = str(mysql["host"])
        cfg.mysql.port = int(mysql["port"])
        cfg.mysql.database = str(mysql["database"])
        cfg.mysql.user = str(mysql["user"])
        if with_password:
            cfg.mysql.password = self.mlmd_password()
        return cfg

    @property
    def serving_dir(self) -> str:
        return os.path.join(self._path("serving"), self.model_name)

    def _schema_path(self, key: str) -> str:
        p = self.raw["schemas"][key]
        return p if os.path.isabs(p) else os.path.join(REPO_ROOT, p)

    @property
    def raw_events_path(self) -> str:
        return self._schema_path("raw_events")

    @property
    def feature_spec_path(self) -> str:
        return self._schema_path("features")

    @property
    def tfdv_schema_path(self) -> str:
        return self._schema_path("tfdv")

    @property
    def training_window(self) -> Dict[str, Any]:
        return dict(self.raw["training_window"])

    @property
    def statistics(self) -> Dict[str, Any]:
        out = dict(self.raw["statistics"])
        rate = out.get("sample_rate")
        if not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f"statistics.sample_rate must be a number in (0, 1], got {rate!r}")
        return out

    @property
    def log_join(self) -> Dict[str, Any]:
        return dict(self.raw["log_join"])

    @property
    def funnel(self):
        """The ``tasks:`` section as a ``schemas.tasks.Funnel`` (a config error names the task)."""
        from schemas.tasks import TaskConfigError, check_head_names, parse_tasks
        if "heads" in self.raw:
            raise ValueError(f"{self.path}: the `heads:` section is now derived from `tasks:` (schemas/tasks.py); "
                             "declare the behaviours as tasks (name, label, after) and remove `heads:`")
        funnel = parse_tasks(self.raw.get("tasks"))
        check_head_names("trainer.loss_weights", self.raw["trainer"]["loss_weights"], funnel)
        from schemas import load_feature_spec
        declared = load_feature_spec(self.feature_spec_path).labels
        for task in funnel.tasks:
            for role, column in (("label", task.label), ("eval_weight", task.eval_weight)):
                if column is not None and column not in declared:
                    raise TaskConfigError(f"task {task.name!r} has {role} {column!r}, which the feature spec "
                                          f"{self.feature_spec_path} does not declare under `labels:` ({declared}); "
                                          "declare it there (the Trainer reads labels from that list)")
        return funnel

    @property
    def heads(self) -> Dict[str, Dict[str, Any]]:
        """Every served head: ``{head: {label, task, type, entire_space, given?, eval_weight?, parent?}}``."""
        return self.funnel.head_config()

    @property
    def trainer(self) -> Dict[str, Any]:
        return copy.deepcopy(self.raw["trainer"])

    @property
    def evaluator(self) -> Dict[str, Any]:
        return copy.deepcopy(self.raw["evaluator"])

    @property
    def serving_check(self) -> Dict[str, Any]:
        return copy.deepcopy(self.raw["serving_check"])

    @property
    def model_server(self) -> Dict[str, Any]:
        return copy.deepcopy(self.raw["model_server"])

    @property
    def airflow(self) -> Dict[str, Any]:
        return copy.deepcopy(self.raw["airflow"])

    @property
    def serving_root(self) -> str:
        return self._path("serving")

    @property
    def beam_pipeline_args(self) -> List[str]:
        return check_beam_args(list(self.raw["beam_pipeline_args"] or []))

    @property
    def input(self) -> Dict[str, Any]:
        """``input:``: ``{kind: logs | samples, samples: {path, format, schema, id_column, default_scene}}``,
        the samples path resolved against the home and the schema against the repository."""
        section = copy.deepcopy(self.raw.get("input") or {})
        kind = section.get("kind", "logs")
        if kind not in ("logs", "samples"):
            raise ValueError(f"{self.path}: input.kind must be `logs` (raw impression/event logs, joined by the log "
                             f"join) or `samples` (labelled rows, one per impression), got {kind!r}")
        samples = dict(section.get("samples") or {})
        if kind == "samples":
            from schemas.samples import FORMATS
            if samples.get("format") not in FORMATS:
                raise ValueError(f"{self.path}: input.samples.format must be {' or '.join(FORMATS)}, "
                                 f"got {samples.get('format')!r}")
            for key in ("path", "schema", "default_scene"):
                if not samples.get(key):
                    raise ValueError(f"{self.path}: input.kind is samples but input.samples.{key} is not set")
            samples["path"] = os.path.join(self.home, samples["path"])          # absolute stays absolute
            samples["schema"] = os.path.join(REPO_ROOT, samples["schema"])
        return {"kind": kind, "samples": samples}


def check_beam_args(args: List[str]) -> List[str]:
    """The runner must be named. Why: with no ``--runner`` (or ``--runner=DirectRunner``) Beam
    2.74 first tries the Prism runner, which downloads a binary from GitHub at run time; on a
    host without egress every Beam stage then waits for that download to fail before falling
    back. ``FnApiRunner`` is the DirectRunner's own in-process engine, named directly."""
    runners = [a.split("=", 1)[1] if "=" in a else "" for a in args if a.split("=")[0] == "--runner"]
    if not runners or not runners[-1]:
        raise ValueError("beam_pipeline_args must name the runner, e.g. --runner=FnApiRunner (local), "
                         "--runner=DataflowRunner, --runner=FlinkRunner: without it Beam's DirectRunner first "
                         "tries to download the Prism runner from the internet")
    if runners[-1] in ("DirectRunner", "SwitchingDirectRunner", "PrismRunner"):
        raise ValueError(f"beam_pipeline_args: --runner={runners[-1]} tries to download the Prism runner at run "
                         "time; use --runner=FnApiRunner (the same local engine, with --direct_running_mode "
                         "and --direct_num_workers)")
    return args


def trainer_config(config: PipelineConfig, **overrides: Any) -> Dict[str, Any]:
    """The Trainer's ``custom_config``: the trainer section plus the tasks, heads and the feature spec it
    trains on. The pipeline, the multi-worker entry point and the benchmarks all train from this."""
    out = dict(config.trainer, heads=config.heads, tasks=config.funnel.as_config(),
               feature_spec_path=config.feature_spec_path)
    out.update(overrides)
    return out


# Mappings keyed by head: a user's file that declares its own `tasks:` replaces them whole, because
# its heads are not the default funnel's (a merge would keep ctr/ctcvr weights for a funnel that has
# no such heads). Without `tasks:` they merge like every other mapping, and a head set to null is
# removed (e.g. `loss_weights: {cvr: 1.0, ctcvr: null}` trains cvr on its given rows instead).
PER_HEAD = {("trainer", "loss_weights"), ("evaluator", "auc_floor"), ("evaluator", "max_auc_drop")}


def _merge(base: Dict[str, Any], override: Dict[str, Any], where: tuple = (),
           replace: frozenset = frozenset()) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if v is None and where in PER_HEAD:
            out.pop(k, None)
            continue
        mergeable = isinstance(v, dict) and isinstance(out.get(k), dict) and where + (k,) not in replace
        out[k] = _merge(out[k], v, where + (k,), replace) if mergeable else v
    return out


def _merge_user(base: Dict[str, Any], override: Dict[str, Any]) -> Dict[str, Any]:
    return _merge(base, override, replace=frozenset(PER_HEAD) if "tasks" in (override or {}) else frozenset())


def load_config(path: Optional[str] = None, home: Optional[str] = None,
                overrides: Optional[Dict[str, Any]] = None) -> PipelineConfig:
    """Loads the config. ``path`` defaults to $RANKPIPE_CONFIG or configs/pipeline.yaml;
    ``home`` to $RANKPIPE_HOME or ./work in the repository."""
    # Absolute: the path goes to every Airflow process in RANKPIPE_CONFIG, and a worker's working
    # directory is its own (a relative path broke every task of the Celery workers).
    path = os.path.abspath(path or os.environ.get("RANKPIPE_CONFIG") or DEFAULT_CONFIG)
    if not os.path.exists(path):
        raise FileNotFoundError(f"pipeline config {path} not found (set RANKPIPE_CONFIG or pass --config)")
    with open(DEFAULT_CONFIG) as fh:
        raw = yaml.safe_load(fh)
    if os.path.abspath(path) != DEFAULT_CONFIG:
        with open(path) as fh:
            raw = _merge_user(raw, yaml.safe_load(fh) or {})
    raw = _merge_user(raw, overrides or {})
    home = os.path.abspath(home or os.environ.get("RANKPIPE_HOME") or os.path.join(REPO_ROOT, "work"))
    return PipelineConfig(raw=raw, home=home, path=path)
