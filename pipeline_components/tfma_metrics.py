"""The deployment gate's metrics as one TFMA metric: per slice, one combiner computes every head's
AUC, log-loss, calibration, mean label and (weighted) example count, for every evaluated model.

Why: TFMA 0.47 feeds its combiners one example at a time, and its native AUC, BinaryCrossEntropy,
Calibration/MeanLabel and ExampleCount each convert every example again
(``metric_util.to_label_prediction_example_weight``) and update a histogram in Python: about five
combiners per head, times three heads, two models and 1 + scenes slices. Here ``add_input`` only
appends one row of floats; every 8192 examples the rows become an array reduced with numpy.

AUC is the Mann-Whitney statistic on the float32 predictions (ties count one half; Mann and
Whitney, Annals of Mathematical Statistics, 1947; its equality with the ROC area: Hanley and McNeil,
Radiology, 1982), NaN where a slice has no positive or no negative label. It comes from a sparse
histogram keyed by each prediction's float32 bit pattern (monotone for non-negative floats), so it
merges by ``np.unique`` + ``np.bincount`` and is exact until a histogram holds more than
``MAX_BUCKETS`` distinct predictions; past that the keys drop low mantissa bits, one at a time,
until it fits (then predictions within a relative 2**-(23 - shift) of each other tie).
TFMA's native AUC instead interpolates over 10,000 fixed thresholds on [0, 1].

Log-loss clips predictions to [1e-7, 1 - 1e-7] (Keras' epsilon), so it is the training loss and
stays finite on a saturated prediction. Calibration is sum(w * prediction) / sum(w * label).

Keys are TFMA's own (auc, binary_crossentropy, calibration, mean_label, weighted_example_count per
model and head, weighted as the head is; example_count per model with no head), so thresholds,
diffs against the baseline and ``tfma.load_eval_result`` see native-looking metrics. A regression
head (``regression``: e.g. dwell seconds) has mean_squared_error instead of AUC and log-loss.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.constants import EXAMPLE_WEIGHTS_KEY, LABELS_KEY, PREDICTIONS_KEY
from tensorflow_model_analysis.metrics import metric_types

AUC = "auc"
LOG_LOSS = "binary_crossentropy"
CALIBRATION = "calibration"
MEAN_LABEL = "mean_label"
MSE = "mean_squared_error"
WEIGHTED_COUNT = "weighted_example_count"
EXAMPLE_COUNT = "example_count"
EPSILON = 1e-7
FLUSH_EVERY = 8192
MAX_BUCKETS = 1 << 18


class GateMetrics(metric_types.Metric):
    """``heads`` maps each head to whether it is evaluated weighted (its example weight from the
    ModelSpec). The computation is created once, by the MetricsSpec of the first head; the other
    heads' specs hold the same metric only so their thresholds attach to their own key (``auc``, or
    ``mean_squared_error`` for a head in ``regression``)."""

    def __init__(self, name: str = AUC, heads: Optional[Dict[str, bool]] = None, example_count: bool = True,
                 regression: Optional[List[str]] = None):
        super().__init__(_computations, name=name, heads=dict(heads or {}), example_count=example_count,
                         regression=list(regression or []))

    @property
    def compute_confidence_interval(self) -> bool:
        return False


def metric_names(weighted: bool, regression: bool) -> tuple:
    """The metrics one head gets: ranking and log-loss for a probability, squared error for a value.
    The keys are the same whichever spec creates them: a GateMetrics ``name`` (``auc``, or
    ``mean_squared_error`` in a regression head's spec) only says which key its thresholds attach to."""
    first = (MSE,) if regression else (AUC, LOG_LOSS)
    return first + (CALIBRATION, MEAN_LABEL) + ((WEIGHTED_COUNT,) if weighted else ())


def _computations(name: str, heads: Dict[str, bool], example_count: bool, regression: List[str] = (),
                  model_names: Optional[List[str]] = None, output_names: Optional[List[str]] = None,
                  example_weighted: bool = False) -> metric_types.MetricComputations:
    del name  # TFMA passes the instance's name; the keys do not depend on it (metric_names)
    if not heads:
        raise ValueError("GateMetrics needs heads: {head: weighted}")
    first = next(iter(heads))
    if list(output_names or [""]) != [first]:
        return []
    if example_weighted != heads[first]:
        raise ValueError(f"GateMetrics: head {first} is {'' if heads[first] else 'not '}weighted in the metric's "
                         f"config but its MetricsSpec says example_weighted={example_weighted}")
    models = list(model_names or [""])
    keys = [metric_types.MetricKey(n, model_name=m, output_name=h, example_weighted=w)
            for m in models for h, w in heads.items() for n in metric_names(w, h in regression)]
    if example_count:
        keys += [metric_types.MetricKey(EXAMPLE_COUNT, model_name=m, example_weighted=False) for m in models]
    return [metric_types.MetricComputation(
        keys=keys, preprocessors=None, combiner=_GateCombiner(models, heads, example_count, regression))]


class _Stats:
    """Sums and the AUC histogram of one (model, head) in one slice."""
    __slots__ = ("w", "wy", "wp", "wloss", "wsq", "keys", "pos", "neg", "parts", "shift", "regression")

    def __init__(self, regression: bool = False):
        self.regression = regression
        self.w = self.wy = self.wp = self.wloss = self.wsq = 0.0
        # the histogram: sorted distinct keys (stored unshifted, low `shift` bits zero) and the
        # positive and negative label weight at each; parts: (keys, pos, neg) not yet merged into it
        self.keys = np.zeros(0, np.int64)
        self.pos = self.neg = np.zeros(0)
        self.parts: List[tuple] = []
        self.shift = 0

    def add(self, y: np.ndarray, p: np.ndarray, w: np.ndarray) -> None:
        p64 = p.astype(np.float64)
        self.w += w.sum()
        self.wy += w @ y
        self.wp += w @ p64
        if self.regression:   # a value, not a probability: no histogram, no log-loss
            self.wsq += w @ np.square(y - p64)
            return
        q = np.clip(p64, EPSILON, 1 - EPSILON)
        self.wloss -= w @ (y * np.log(q) + (1 - y) * np.log1p(-q))
        keys = (np.clip(p, 0, 1) + np.float32(0)).view(np.int32).astype(np.int64)  # +0 turns -0.0 into 0.0
        self.parts.append((keys, w * y, w * (1 - y)))
        if len(self.parts) > 16:
            self.compact()

    def merge(self, other: "_Stats") -> None:
        self.w += other.w
        self.wy += other.wy
        self.wp += other.wp
        self.wloss += other.wloss
        self.wsq += other.wsq
        self.shift = max(self.shift, other.shift)
        self.parts += [(other.keys, other.pos, other.neg)] + other.parts

    def compact(self) -> None:
        if not self.parts:
            return
        keys, pos, neg = (np.concatenate([getattr(self, a)] + [part[i] for part in self.parts])
                          for i, a in enumerate(("keys", "pos", "neg")))
        keys >>= self.shift
        while True:
            uniq, inverse = np.unique(keys, return_inverse=True)
            if len(uniq) <= MAX_BUCKETS:
                break
            self.shift += 1
            keys >>= 1
        self.keys = uniq << self.shift
        self.pos = np.bincount(inverse, pos, len(uniq))
        self.neg = np.bincount(inverse, neg, len(uniq))
        self.parts = []

    def auc(self) -> float:
        self.compact()
        p, n = self.pos.sum(), self.neg.sum()
        if p <= 0 or n <= 0:
            return float("nan")
        below = np.cumsum(self.neg) - self.neg
        return float(self.pos @ (below + 0.5 * self.neg) / (p * n))


class _Accumulator:
    """rows: one list per example not yet reduced (labels, weights of the weighted heads, then each
    model's predictions); stats: the reduced part, per (model, head)."""
    __slots__ = ("count", "rows", "stats")

    def __init__(self, models: List[str], heads: Dict[str, bool], regression: Iterable[str] = ()):
        self.count = 0
        self.rows: List[list] = []
        self.stats = {(m, h): _Stats(h in regression) for m in models for h in heads}


class _GateCombiner(beam.CombineFn):

    def __init__(self, models: List[str], heads: Dict[str, bool], example_count: bool,
                 regression: Iterable[str] = ()):
        self._regression = list(regression)
        self._models = models
        self._heads = heads
        self._weighted = [h for h, w in heads.items() if w]
        self._example_count = example_count

    def create_accumulator(self) -> _Accumulator:
        return _Accumulator(self._models, self._heads, self._regression)

    def add_input(self, acc: _Accumulator, element: metric_types.StandardMetricInputs) -> _Accumulator:
        # the extracts dict itself: the labels/predictions properties cost 60 % of this call
        ex = getattr(element, "extracts", None)
        if ex is not None and LABELS_KEY in ex and PREDICTIONS_KEY in ex:
            labels, predictions, weights = ex[LABELS_KEY], ex[PREDICTIONS_KEY], ex.get(EXAMPLE_WEIGHTS_KEY)
        else:
            labels, predictions, weights = element.labels, element.predictions, element.example_weights
        first = self._models[0]
        if first:   # several models: values keyed by model; every model shares the candidate's labels/weights
            labels = labels[first]
            weights = weights[first] if weights else weights
        row = [labels[h] for h in self._heads]
        row += [weights[h] for h in self._weighted]
        for m in self._models:
            by_head = predictions[m] if m else predictions
            row += [by_head[h] for h in self._heads]
        try:   # one-element arrays to floats here: 3x cheaper than numpy converting a list of arrays
            acc.rows.append([v.item() for v in row])
        except (AttributeError, ValueError) as e:
            raise ValueError(f"GateMetrics expects one label, weight and prediction per example and head, "
                             f"got {row}") from e
        acc.count += 1
        if len(acc.rows) >= FLUSH_EVERY:
            self._flush(acc)
        return acc

    def _flush(self, acc: _Accumulator) -> None:
        if not acc.rows:
            return
        table = np.array(acc.rows)   # float32 predictions survive the round trip through float exactly
        acc.rows = []
        heads = list(self._heads)
        nh, nw = len(heads), len(self._weighted)
        for i, h in enumerate(heads):
            y = table[:, i]
            w = table[:, nh + self._weighted.index(h)] if h in self._weighted else np.ones(len(y))
            for j, m in enumerate(self._models):
                acc.stats[(m, h)].add(y, table[:, nh + nw + j * nh + i].astype(np.float32), w)

    def merge_accumulators(self, accumulators: Iterable[_Accumulator]) -> _Accumulator:
        it = iter(accumulators)
        out = next(it)
        self._flush(out)
        for acc in it:
            self._flush(acc)
            out.count += acc.count
            for k, s in acc.stats.items():
                out.stats[k].merge(s)
        return out

    def compact(self, acc: _Accumulator) -> _Accumulator:
        self._flush(acc)
        for s in acc.stats.values():
            s.compact()
        return acc

    def extract_output(self, acc: _Accumulator) -> metric_types.MetricsDict:
        self._flush(acc)
        out = {}
        for (m, h), s in acc.stats.items():
            w = self._heads[h]
            key = lambda n: metric_types.MetricKey(n, model_name=m, output_name=h, example_weighted=w)  # noqa: E731
            with np.errstate(divide="ignore", invalid="ignore"):
                if s.regression:
                    out[key(MSE)] = np.float64(s.wsq) / s.w
                else:
                    out[key(AUC)] = s.auc()
                    out[key(LOG_LOSS)] = np.float64(s.wloss) / s.w
                out[key(CALIBRATION)] = np.float64(s.wp) / s.wy
                out[key(MEAN_LABEL)] = np.float64(s.wy) / s.w
            if w:
                out[key(WEIGHTED_COUNT)] = float(s.w)
        if self._example_count:
            for m in self._models:
                out[metric_types.MetricKey(EXAMPLE_COUNT, model_name=m, example_weighted=False)] = float(acc.count)
        return out
