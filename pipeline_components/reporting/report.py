"""Per-scene run report read back from ML Metadata and the Evaluator's output.

Lineage is followed through MLMD events (join examples -> Evaluator ->
blessing -> Pusher), so the report is the same whichever orchestrator ran the
pipeline and never relies on directory naming.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)

from ml_metadata.metadata_store import metadata_store  # noqa: E402
from ml_metadata.proto import metadata_store_pb2  # noqa: E402

from configs import PipelineConfig  # noqa: E402

INPUT = metadata_store_pb2.Event.INPUT
OUTPUTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


@dataclasses.dataclass
class RunSummary:
    span_date: str
    examples_uri: str
    evaluation_uri: Optional[str] = None
    blessed: Optional[bool] = None
    pushed: Optional[bool] = None
    pushed_destination: Optional[str] = None
    report_uri: Optional[str] = None  # the DeploymentGate's report.md / report.png
    baseline_span: Optional[str] = None  # span date of the model it was compared with; "" = none
    trained_on: List[str] = dataclasses.field(default_factory=list)  # span dates of the training window
    # the Trainer's train_summary.json "instance_selection" (trainer/instance_selection.py), if it selected
    selection: Optional[Dict] = None
    # (slice, head) -> metric name -> value; slice is "overall" or a scene name
    metrics: Dict[Tuple[str, str], Dict[str, float]] = dataclasses.field(default_factory=dict)


def open_store(config: PipelineConfig) -> metadata_store.MetadataStore:
    cfg = config.metadata_connection_config()
    if config.metadata_backend == "sqlite":
        if not os.path.exists(config.metadata_path):
            raise FileNotFoundError(f"no ML Metadata database at {config.metadata_path}: has the pipeline run yet?")
        cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(cfg)


def _type_names(store) -> Dict[int, str]:
    names = {t.id: t.name for t in store.get_artifact_types()}
    names.update({t.id: t.name for t in store.get_execution_types()})
    return names


def _consumers(store, artifact_id: int) -> List[int]:
    return [e.execution_id for e in store.get_events_by_artifact_ids([artifact_id]) if e.type == INPUT]


def _outputs(store, execution_id: int) -> List[metadata_store_pb2.Artifact]:
    ids = [e.artifact_id for e in store.get_events_by_execution_ids([execution_id]) if e.type in OUTPUTS]
    return store.get_artifacts_by_id(ids) if ids else []


def _input_by_key(store, execution_id: int, key: str) -> List[int]:
    return [e.artifact_id for e in store.get_events_by_execution_ids([execution_id])
            if e.type == INPUT and e.path.steps and e.path.steps[0].key == key]


def _trainer(store, evaluator_id: int) -> Optional[int]:
    """The execution that trained the evaluated model: Evaluator --model--> Trainer."""
    for model_id in _input_by_key(store, evaluator_id, "model"):
        for e in store.get_events_by_artifact_ids([model_id]):
            if e.type in OUTPUTS:
                return e.execution_id
    return None


def _training_window(store, trainer_id: int) -> List[str]:
    """Span dates the Trainer trained on: Trainer --examples-->."""
    examples = store.get_artifacts_by_id(_input_by_key(store, trainer_id, "examples"))
    return sorted(a.custom_properties["span_date"].string_value for a in examples
                  if "span_date" in a.custom_properties)


def _selection(store, type_names: Dict[int, str], trainer_id: int) -> Optional[Dict]:
    """The instance-selection statistics of the Trainer's train_summary.json (in its ModelRun)."""
    import json

    import tensorflow as tf
    for out in _outputs(store, trainer_id):
        path = os.path.join(out.uri, "train_summary.json")
        if type_names.get(out.type_id) == "ModelRun" and tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as fh:
                return json.load(fh).get("instance_selection")
    return None


def _latest_execution(store, ids: List[int], type_names: Dict[int, str], suffix: str):
    execs = [x for x in store.get_executions_by_id(ids) if type_names.get(x.type_id, "").endswith(suffix)]
    done = [x for x in execs if x.last_known_state in (metadata_store_pb2.Execution.COMPLETE,
                                                       metadata_store_pb2.Execution.CACHED)]
    return max(done or execs, key=lambda x: x.id) if (done or execs) else None


def _read_gate(store, type_names: Dict[int, str], gate_id: int, summary: RunSummary) -> None:
    """The DeploymentGate's verdict and report, and what the SpanPusher did with its blessing."""
    for out in _outputs(store, gate_id):
        kind = type_names.get(out.type_id)
        if kind == "rankpipe.DeploymentReport":
            summary.report_uri = out.uri
        elif kind == "ModelBlessing":
            summary.blessed = bool(out.custom_properties["blessed"].int_value) \
                if "blessed" in out.custom_properties else None
            if "baseline_span_date" in out.custom_properties:
                summary.baseline_span = out.custom_properties["baseline_span_date"].string_value
            elif "current_model_id" in out.custom_properties:
                summary.baseline_span = "" if "baseline_model_id" not in out.custom_properties else None
            pusher = _latest_execution(store, _consumers(store, out.id), type_names, "Pusher")
            for pushed in (_outputs(store, pusher.id) if pusher else []):
                props = pushed.custom_properties
                summary.pushed = bool(props["pushed"].int_value) if "pushed" in props else None
                if "pushed_destination" in props:
                    summary.pushed_destination = props["pushed_destination"].string_value


def collect_runs(config: PipelineConfig) -> List[RunSummary]:
    store = open_store(config)
    type_names = _type_names(store)
    runs: Dict[str, RunSummary] = {}
    for art in sorted(store.get_artifacts_by_type("Examples"), key=lambda a: a.id):
        if "span_date" not in art.custom_properties or art.state != metadata_store_pb2.Artifact.LIVE:
            continue
        summary = RunSummary(span_date=art.custom_properties["span_date"].string_value, examples_uri=art.uri)
        evaluator = _latest_execution(store, _consumers(store, art.id), type_names, "Evaluator")
        if evaluator is not None:
            trainer = _trainer(store, evaluator.id)
            if trainer is not None:
                summary.trained_on = _training_window(store, trainer)
                summary.selection = _selection(store, type_names, trainer)
            for out in _outputs(store, evaluator.id):
                if type_names.get(out.type_id) == "ModelEvaluation":
                    summary.evaluation_uri = out.uri
                    gate = _latest_execution(store, _consumers(store, out.id), type_names, "DeploymentGate")
                    if gate is not None:
                        _read_gate(store, type_names, gate.id, summary)
        runs[summary.span_date] = summary  # a rerun of a day replaces the earlier one
    return [runs[k] for k in sorted(runs)]


def load_metrics(summary: RunSummary, heads: Dict[str, Dict], scene_feature: str) -> None:
    """Fills summary.metrics[(slice, head)] from the Evaluator's output; slice is 'overall' or a scene."""
    from pipeline_components.components.gate_report import read_slice_metrics
    if summary.evaluation_uri:
        summary.metrics.update(read_slice_metrics(summary.evaluation_uri, list(heads), scene_feature))


def format_report(runs: List[RunSummary], heads: Dict[str, Dict], scenes: List[str],
                  calibration_band: Optional[Dict[str, List[float]]] = None) -> str:
    """One row per run and slice: AUC and calibration per head; a calibration outside
    ``evaluator.calibration_band`` (overall band, or the scene band) is flagged with ``!``."""
    from pipeline_components.components.gate_report import check_calibration
    thresholds = {"calibration_band": calibration_band or {}}
    head_names = list(heads)
    regression = {h for h, a in heads.items() if a.get("type") == "regression"}
    header = ["date", "scene", "examples"] + [f"{h} {m}" for h in head_names
                                              for m in (("MSE" if h in regression else "AUC"), "cal")] + \
        ["blessed", "pushed"]
    rows = [header]
    flagged = False
    for run in runs:
        for scene in ["overall"] + scenes:
            count = run.metrics.get((scene, "_all"), {}).get("example_count")
            cells = [run.span_date, scene, f"{int(count):,}" if count is not None else "-"]
            for h in head_names:
                m = run.metrics.get((scene, h), {})
                auc, cal = m.get("mean_squared_error" if h in regression else "auc"), m.get("calibration")
                flag = check_calibration(run.metrics, scene, h, thresholds).flag
                flagged = flagged or bool(flag)
                cells += [f"{auc:.4g}" if auc is not None and h in regression else f"{auc:.4f}" if auc is not None
                          else "-",
                          "-" if cal is None or cal != cal else f"{cal:.3f}" + (" !" if flag else "")]
            if scene == "overall":
                cells += [{True: "yes", False: "NO", None: "-"}[run.blessed], {True: "yes", False: "no", None: "-"}[run.pushed]]
            else:
                cells += ["", ""]
            rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    weighted = [f"{h} (weighted by {a['eval_weight']})" for h, a in heads.items() if a.get("eval_weight")]
    notes = ["AUC on the eval split" + (f"; {', '.join(weighted)}: impressions where that did not happen weigh 0"
                                        if weighted else ""),
             "cal = calibration, sum of predictions / sum of labels (1.0 is calibrated)"
             + (f"; ! = outside evaluator.calibration_band {calibration_band} by more than its sampling error"
                if flagged else "")]
    for run in runs:
        if run.trained_on:
            notes.append(f"{run.span_date}: trained on {len(run.trained_on)} span(s) "
                         f"{run.trained_on[0]}..{run.trained_on[-1]}")
        for line in selection_lines(run.selection):
            notes.append(f"{run.span_date}: {line}")
        if run.baseline_span is not None:
            notes.append(f"{run.span_date}: compared with the model of span {run.baseline_span}" if run.baseline_span
                         else f"{run.span_date}: no baseline (no blessed model of an earlier span)")
        if run.pushed_destination:
            notes.append(f"{run.span_date}: pushed to {run.pushed_destination}")
        if run.report_uri:
            notes.append(f"{run.span_date}: gate report {os.path.join(run.report_uri, 'report.md')}")
    return "\n".join(lines + [""] + notes)


def selection_lines(selection: Optional[Dict]) -> List[str]:
    """Per target scene: source rows kept over the training window, and the discriminator's accuracy
    over the episodes (toward 0.5: the kept rows look like the target's)."""
    lines = []
    for name, stats in ((selection or {}).get("targets") or {}).items():
        accuracy = [e.get("discriminator_accuracy") for e in stats.get("episodes", [])]
        shown = " -> ".join("-" if a is None else f"{a:.2f}" for a in accuracy)
        total = stats.get("window_source_rows") or 0
        kept = stats.get("window_kept_rows") or 0
        how = (f"tau {selection.get('tau')}" if selection.get("policy", "learned") == "learned"
               else f"policy {selection['policy']}, nothing learned")
        lines.append(f"instance selection added {kept:,} of {total:,} {selection.get('source_scene')} examples "
                     f"({kept / max(total, 1):.1%}, {how}) to {name}"
                     + (f"; discriminator accuracy by episode {shown}" if accuracy else ""))
    return lines


def report_for(config: PipelineConfig) -> str:
    """The per-scene table of every run day in ``config``'s home, read with the scene feature and the
    scene list of the schemas that config names (``schemas:`` in --config), not the defaults."""
    from schemas import load_feature_spec
    from schemas.samples import run_scenes
    runs = collect_runs(config)
    scene_feature = load_feature_spec(config.feature_spec_path).scene_feature
    for run in runs:
        load_metrics(run, config.heads, scene_feature)
    from pipeline_components.components.gate_report import calibration_band
    return format_report(runs, config.heads, run_scenes(config.input, config.raw_events_path),
                         calibration_band(config.evaluator))
