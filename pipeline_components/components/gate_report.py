"""The deployment decision and its readable report (markdown + PNG), from TFMA's output.

Pure functions over plain data, so the rules are unit-tested without running
TFMA: ``decide`` turns TFMA's threshold failures, the per-scene example counts
and the serving check into blocking reasons and reported-only notes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

OVERALL = "overall"
# (slice, head) -> metric name -> value; slice is "overall" or a scene name
Metrics = Dict[Tuple[str, str], Dict[str, float]]


@dataclasses.dataclass
class Failure:
    """One TFMA threshold failure."""
    slice: str
    head: str
    metric: str
    value: float
    message: str
    is_change: bool


@dataclasses.dataclass
class Decision:
    blessed: bool
    blocking: List[str]
    reported: List[str]
    has_baseline: bool


def count_for(metrics: Metrics, slice_: str, head: str) -> Optional[float]:
    """The examples a head was evaluated on in a slice: the weighted count where the head is
    weighted (CVR: clicks), else the example count."""
    m = metrics.get((slice_, head), {})
    if "weighted_example_count" in m:
        return m["weighted_example_count"]
    return metrics.get((slice_, "_all"), {}).get("example_count")


def describe(f: Failure, candidate: Metrics, baseline: Metrics, thresholds: Dict[str, Dict[str, float]]) -> str:
    where = "overall" if f.slice == OVERALL else f"on scene {f.slice}"
    cand = candidate.get((f.slice, f.head), {}).get(f.metric)
    if f.is_change:
        base = baseline.get((f.slice, f.head), {}).get(f.metric)
        if cand is not None and base is not None and f.metric == "mean_squared_error":
            return (f"{f.head} MSE {where} rose {cand / base - 1:.1%} ({base:.4g} -> {cand:.4g}), "
                    f"more than max_mse_increase {thresholds['max_mse_increase'][f.head]:g}")
        if cand is not None and base is not None:
            return (f"{f.head} {f.metric.upper()} {where} fell {base - cand:.4f} ({base:.4f} -> {cand:.4f}), "
                    f"more than max_auc_drop {thresholds['max_auc_drop'][f.head]:g}")
    elif cand is not None:
        return f"{f.head} {f.metric.upper()} {where} is {cand:.4f}, below the floor {thresholds['auc_floor'][f.head]:g}"
    return f"{f.head} {f.metric} {where}: {f.message}"


def calibration_band(evaluator: Dict[str, Any]) -> Dict[str, Any]:
    """``evaluator.calibration_band`` checked: {"overall": [lo, hi], "scene": [lo, hi], "z": z} with
    0 < lo <= 1 <= hi, the scene band at least as wide as the overall one, and z >= 0."""
    band = evaluator.get("calibration_band")
    if band is None:
        return {}
    out: Dict[str, Any] = {}
    for key in ("overall", "scene"):
        value = band.get(key) if isinstance(band, dict) else None
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and 0 < float(value[0]) <= 1 <= float(value[1])):
            raise ValueError(f"evaluator.calibration_band.{key} must be [low, high] with 0 < low <= 1 <= high, "
                             f"got {value!r}")
        out[key] = [float(value[0]), float(value[1])]
    if out["scene"][0] > out["overall"][0] or out["scene"][1] < out["overall"][1]:
        raise ValueError(f"evaluator.calibration_band.scene {out['scene']} must contain the overall band "
                         f"{out['overall']} (a scene has fewer examples, so more noise)")
    z = band.get("z", 2.0)
    if not isinstance(z, (int, float)) or z < 0:
        raise ValueError(f"evaluator.calibration_band.z must be a number >= 0, got {z!r}")
    out["z"] = float(z)
    return out


def band_of(thresholds: Dict, slice_: str) -> Optional[Tuple[float, float]]:
    """The calibration band for a slice ("overall" or a scene), or None when none is configured."""
    band = (thresholds.get("calibration_band") or {}).get("overall" if slice_ == OVERALL else "scene")
    return (float(band[0]), float(band[1])) if band else None


@dataclasses.dataclass
class CalibrationCheck:
    value: Optional[float]
    band: Optional[Tuple[float, float]]
    margin: float           # z standard errors of the ratio, added to both sides of the band
    positives: Optional[float]

    @property
    def flag(self) -> str:
        """'' inside the band widened by the margin; otherwise how far off, in words."""
        v, band = self.value, self.band
        if v is None or band is None or v != v or band[0] - self.margin <= v <= band[1] + self.margin:
            return ""
        return f"over-predicts by {v - 1:.0%}" if v > 1 else f"under-predicts by {1 - v:.0%}"


def check_calibration(metrics: Metrics, slice_: str, head: str, thresholds: Dict) -> CalibrationCheck:
    """A slice's calibration against its band. The ratio sum(predictions) / sum(labels) is noisy
    when the slice has few positive labels: its standard error is about ratio / sqrt(positives)
    (the label sum is a count), e.g. 5 % with 400 conversions. The band is widened by ``z`` such
    errors, so the gate refuses a miscalibrated model, not an unlucky evaluation day."""
    m = metrics.get((slice_, head), {})
    value, mean_label = m.get("calibration"), m.get("mean_label")
    n = count_for(metrics, slice_, head)
    positives = mean_label * n if mean_label is not None and n is not None else None
    z = float((thresholds.get("calibration_band") or {}).get("z", 0.0))
    # The widening is a count's sampling error: a regression head's label sum is not a count (its value
    # would depend on the label's unit), so its band is not widened. A regression head is the one with
    # an MSE (tfma_metrics): its own metrics say so, whichever thresholds the caller passes.
    regression = "mean_squared_error" in m
    counted = value is not None and value == value and positives is not None and positives > 0 and not regression
    margin = z * value / positives ** 0.5 if counted else 0.0
    return CalibrationCheck(value, band_of(thresholds, slice_), margin, positives)


def calibration_failures(candidate: Metrics, heads: List[str], scenes: List[str], min_scene_examples: float,
                         thresholds: Dict) -> Tuple[List[str], List[str]]:
    """(blocking, reported): each head's calibration (sum of predictions / sum of labels) must lie
    inside ``calibration_band.overall`` overall and inside the wider ``calibration_band.scene`` in
    every scene with at least ``min_scene_examples`` for that head (both widened by the sampling
    error, ``check_calibration``); smaller scenes are reported.
    Why a gate of its own: AUC only ranks, and a model that under-predicts clicks by 20 % ranks
    as well as a calibrated one, yet breaks every bid and ctr x cvr x price score built on it."""
    blocking, reported = [], []
    for s in [OVERALL] + scenes:
        for h in heads:
            c = check_calibration(candidate, s, h, thresholds)
            if not c.flag:
                continue
            where = "overall" if s == OVERALL else f"on scene {s}"
            noise = (f" by more than its sampling error ({c.margin:.3f}: {thresholds['calibration_band']['z']:g} "
                     f"standard errors with {c.positives:,.0f} positive labels)" if c.positives else "")
            text = (f"{h} calibration {where} is {c.value:.3f} ({c.flag}), outside the band "
                    f"{c.band[0]:g}-{c.band[1]:g}{noise} "
                    f"(evaluator.calibration_band.{'overall' if s == OVERALL else 'scene'})")
            n = count_for(candidate, s, h)
            if s != OVERALL and (n is None or n < min_scene_examples):
                reported.append(f"{text} [not gating: {0 if n is None else n:,.0f} examples < "
                                f"min_scene_examples {min_scene_examples:,.0f}]")
            else:
                blocking.append(text)
    return blocking, reported


def decide(failures: List[Failure], validation_ok: bool, candidate: Metrics, baseline: Metrics,
           has_baseline: bool, min_scene_examples: float, thresholds: Dict[str, Dict[str, float]],
           serving_reasons: List[str], heads: Optional[List[str]] = None,
           scenes: Optional[List[str]] = None) -> Decision:
    blocking, reported = calibration_failures(candidate, heads or [], scenes or [], min_scene_examples, thresholds)
    for f in failures:
        text = describe(f, candidate, baseline, thresholds)
        n = count_for(candidate, f.slice, f.head)
        if f.slice != OVERALL and f.is_change and n is not None and n < min_scene_examples:
            reported.append(f"{text} [not gating: {n:,.0f} examples < min_scene_examples {min_scene_examples:,.0f}]")
        else:
            blocking.append(text)
    if not validation_ok and not failures:
        blocking.append("TFMA validation failed without a threshold failure (missing slices or metrics); "
                        "see the Evaluator's validations output")
    blocking += [f"serving check: {r}" for r in serving_reasons]
    return Decision(not blocking, blocking, reported, has_baseline)


def rows(candidate: Metrics, baseline: Metrics, heads: List[str], scenes: List[str],
         min_scene_examples: float, thresholds: Optional[Dict] = None) -> List[List[str]]:
    def fmt(v: Optional[float], digits: int = 4) -> str:
        return "-" if v is None or v != v else f"{v:.{digits}f}"
    out = []
    for s in [OVERALL] + scenes:
        for h in heads:
            c, b = candidate.get((s, h), {}), baseline.get((s, h), {})
            n = count_for(candidate, s, h)
            delta = (c["auc"] - b["auc"]) if "auc" in c and "auc" in b else None
            loss = "mean_squared_error" if "mean_squared_error" in c else "binary_crossentropy"
            gates = "yes" if s == OVERALL or (n is not None and n >= min_scene_examples) else "reported only"
            flag = check_calibration(candidate, s, h, thresholds or {}).flag
            out.append([s, h, "-" if n is None else f"{n:,.0f}", fmt(c.get("auc")), fmt(b.get("auc")),
                        "-" if delta is None else f"{delta:+.4f}",
                        fmt(c.get(loss)), fmt(b.get(loss)),
                        fmt(c.get("calibration"), 3) + (f" ({flag})" if flag else ""), fmt(b.get("calibration"), 3),
                        gates])
    return out


HEADER = ["slice", "head", "examples", "AUC", "baseline AUC", "change", "log-loss (MSE)", "baseline log-loss (MSE)",
          "calibration", "baseline calibration", "gates"]


def markdown(title: str, decision: Decision, table: List[List[str]], context: List[str]) -> str:
    verdict = "**BLESSED**: the model may be pushed." if decision.blessed else \
        "**NOT BLESSED**: the model will not be pushed."
    lines = [f"# {title}", "", verdict, ""] + [f"- {c}" for c in context] + [""]
    if not decision.has_baseline:
        lines += ["No baseline (no blessed model yet): change thresholds are not applied; the value floors "
                  "and the serving check gate this run.", ""]
    if decision.blocking:
        lines += ["## Why not blessed", ""] + [f"- {r}" for r in decision.blocking] + [""]
    if decision.reported:
        lines += ["## Reported, not gating", ""] + [f"- {r}" for r in decision.reported] + [""]
    lines += ["## Candidate vs baseline", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in table]
    lines += ["", "Calibration = sum of predictions / sum of labels (1.0 is calibrated); a value outside "
              "evaluator.calibration_band says by how much the model over- or under-predicts. "
              "A conditional head (CVR) is weighted by its parent's label (click): its examples are the "
              "impressions where the parent happened. A regression head has MSE in the log-loss column."]
    return "\n".join(lines) + "\n"


def chart(candidate: Metrics, baseline: Metrics, heads: List[str], scenes: List[str], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    slices = [OVERALL] + scenes
    heads = [h for h in heads if any("auc" in m.get((s, h), {}) for m in (candidate, baseline) for s in slices)] \
        or heads[:1]
    fig, axes = plt.subplots(1, len(heads), figsize=(4.5 * len(heads), 4), squeeze=False)
    x = np.arange(len(slices))
    for ax, h in zip(axes[0], heads):
        cand = [candidate.get((s, h), {}).get("auc", np.nan) for s in slices]
        base = [baseline.get((s, h), {}).get("auc", np.nan) for s in slices]
        ax.bar(x - 0.2, base, 0.4, label="baseline", color="grey")
        ax.bar(x + 0.2, cand, 0.4, label="candidate", color="tab:blue")
        ax.set_xticks(x)
        ax.set_xticklabels(slices, rotation=30, ha="right")
        finite = [v for v in cand + base if np.isfinite(v)]
        ax.set_ylim(max(0.0, min(finite, default=0.5) - 0.05), min(1.0, max(finite, default=1.0) + 0.02))
        ax.set_title(f"{h} AUC")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _slice_name(keys: Dict, scene_feature: str) -> Optional[str]:
    if set(keys) - {scene_feature}:
        return None
    scene = keys.get(scene_feature)
    return (scene.decode() if isinstance(scene, bytes) else scene) or OVERALL


def evaluated_models(evaluation_uri: str) -> List[str]:
    """Model names in an Evaluator output: ["candidate", "baseline"] with a baseline, else [""]."""
    from tensorflow_model_analysis.writers import eval_config_writer
    return list(eval_config_writer.load_eval_run(evaluation_uri)[3])


def read_slice_metrics(evaluation_uri: str, heads: List[str], scene_feature: str,
                       model: str = "candidate") -> Metrics:
    """(slice, head) -> metrics of one evaluated model ("candidate" or "baseline"; a run without a
    baseline has only the candidate); head "_all" holds the example count."""
    import tensorflow_model_analysis as tfma
    names = evaluated_models(evaluation_uri)
    if model not in names:
        if model == "baseline":
            return {}
        model = names[0]
    result = tfma.load_eval_result(evaluation_uri, model_name=model)
    metrics: Metrics = {}
    for slice_key, by_output in result.slicing_metrics:
        name = _slice_name(dict(slice_key), scene_feature)
        if name is None:
            continue
        for head in list(heads) + [""]:
            if head in by_output:
                metrics[(name, head or "_all")] = {
                    m: float(v["doubleValue"])  # NaN arrives as the string "NaN" (proto JSON)
                    for m, v in by_output[head][""].items() if "doubleValue" in v}
    return metrics


def read_failures(evaluation_uri: str, scene_feature: str) -> Tuple[bool, List[Failure]]:
    import tensorflow_model_analysis as tfma
    validation = tfma.load_validation_result(evaluation_uri)
    failures = []
    for per_slice in validation.metric_validations_per_slice:
        keys = {k.column: (k.bytes_value or k.int64_value or k.float_value) for k in per_slice.slice_key.single_slice_keys}
        name = _slice_name(keys, scene_feature) or str(keys)
        for f in per_slice.failures:
            failures.append(Failure(slice=name, head=f.metric_key.output_name, metric=f.metric_key.name,
                                    value=f.metric_value.double_value.value, message=f.message,
                                    is_change=f.metric_key.is_diff))
    return bool(validation.validation_ok), failures
