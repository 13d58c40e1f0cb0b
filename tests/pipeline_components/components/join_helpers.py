"""Runs the LogJoinExampleGen executor directly (no orchestrator) and reads its output."""
import glob
import json
import os

import pandas as pd
import tensorflow as tf
from tfx.types import standard_artifacts

from pipeline_components.components import log_join

WINDOW_DAYS = 3.0


def run_join(logs_root, out, run_date, max_quarantine=0.01, delay=0, evidence_root=None, funnel=None):
    """``funnel``: log_join.funnel (a list of steps) or None for the default funnel."""
    examples = standard_artifacts.Examples()
    examples.uri = str(out / "examples")
    report = log_join.JoinReport()
    report.uri = str(out / "report")
    os.makedirs(report.uri, exist_ok=True)
    exec_properties = {"logs_root": logs_root, "run_date": run_date, "label_delay_days": delay,
                       "attribution_window_days": WINDOW_DAYS, "eval_percent": 20,
                       "max_quarantine_fraction": max_quarantine, "evidence_root": evidence_root}
    if funnel is not None:
        exec_properties["funnel"] = json.dumps(funnel)
    log_join.Executor().Do({}, {"examples": [examples], "join_report": [report]}, exec_properties)
    return examples, report


def read_examples(examples_uri, labels=("click", "conversion")):
    """Every joined example of an Examples artifact's directory, one row each, with its split."""
    rows = []
    for folder in sorted(glob.glob(os.path.join(examples_uri, "Split-*"))):
        split = os.path.basename(folder)[len("Split-"):]
        for path in sorted(glob.glob(os.path.join(folder, "*.gz"))):
            for rec in tf.data.TFRecordDataset(path, compression_type="GZIP"):
                ex = tf.train.Example.FromString(rec.numpy()).features.feature
                rows.append({"impression_id": ex["impression_id"].bytes_list.value[0].decode(),
                             "scene": ex["scene"].bytes_list.value[0].decode(),
                             **{label: ex[label].int64_list.value[0] for label in labels}, "split": split})
    return pd.DataFrame(rows)
