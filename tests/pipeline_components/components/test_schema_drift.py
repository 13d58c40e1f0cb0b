"""Schema drift is caught by ExampleValidator against the curated schema and stops the run before Transform."""
import datetime as dt
import glob
import json
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tfx import v1 as tfx

from loggen import write_days
from pipeline_components.components.anomalies_gate import AnomaliesGate
from configs import load_config
from pipeline_components.pipeline import log_join_component, statistics_gen_component
from schemas import TFDV_SCHEMA_PATH

DAY = dt.date(2026, 11, 20)


def _validation_pipeline(home, logs_root, sample_rate=None):
    # The pipeline's own StatisticsGen, sampling as configured (configs/pipeline.yaml, statistics).
    overrides = {"paths": {"logs": logs_root}}
    if sample_rate is not None:
        overrides["statistics"] = {"sample_rate": sample_rate}
    config = load_config(home=home, overrides=overrides)
    assert config.statistics["sample_rate"] < 1
    join = log_join_component(config, DAY.isoformat())
    stats = statistics_gen_component(config, join.outputs["examples"])
    schema = tfx.components.ImportSchemaGen(schema_file=TFDV_SCHEMA_PATH)
    validator = tfx.components.ExampleValidator(statistics=stats.outputs["statistics"],
                                                schema=schema.outputs["schema"])
    gate = AnomaliesGate(anomalies=validator.outputs["anomalies"], examples=join.outputs["examples"],
                         statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
    return tfx.dsl.Pipeline(
        pipeline_name="drift", pipeline_root=os.path.join(home, "root"),
        components=[join, stats, schema, validator, gate], beam_pipeline_args=config.beam_pipeline_args,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(home, "mlmd.sqlite")))


def _drift(logs_root):
    path = os.path.join(logs_root, "impressions", f"date={DAY:%Y-%m-%d}", "part-00000.parquet")
    df = pq.read_table(path).to_pandas()
    df["coupon_code"] = "NOV20"                      # a new column
    # A category the schema has never seen, on every 4th row: StatisticsGen samples whole record
    # batches, and a block of rows at the file's start was missed when no batch of it was sampled.
    df.loc[df.index[::4], "device"] = "smart_tv"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)


def test_clean_day_passes_the_gate(tmp_path):
    logs = str(tmp_path / "logs")
    write_days(logs, str(tmp_path / "truth"), DAY, 1, 3000, progress=None)
    tfx.orchestration.LocalDagRunner().run(_validation_pipeline(str(tmp_path), logs))
    [result] = glob.glob(str(tmp_path / "root" / "AnomaliesGate" / "result" / "*" / "anomalies.json"))
    assert json.load(open(result)) == {}


def test_new_column_and_new_category_stop_the_run_with_a_readable_report(tmp_path):
    logs = str(tmp_path / "logs")
    write_days(logs, str(tmp_path / "truth"), DAY, 1, 3000, progress=None)
    _drift(logs)
    with pytest.raises(Exception) as err:
        tfx.orchestration.LocalDagRunner().run(_validation_pipeline(str(tmp_path), logs))
    msg = str(err.value)
    assert "curated schema" in msg
    assert "feature 'coupon_code'" in msg and "New column" in msg
    assert "feature 'device'" in msg and "smart_tv" in msg
    assert not glob.glob(str(tmp_path / "root" / "Transform" / "*"))


def test_drift_is_caught_when_the_statistics_sample_is_empty(tmp_path):
    """TFDV samples whole record batches: at this rate a small day's sample is empty, and ExampleValidator
    alone would pass it. The gate validates exact statistics of such a split instead."""
    logs = str(tmp_path / "logs")
    write_days(logs, str(tmp_path / "truth"), DAY, 1, 3000, progress=None)
    _drift(logs)
    with pytest.raises(Exception) as err:
        tfx.orchestration.LocalDagRunner().run(_validation_pipeline(str(tmp_path), logs, sample_rate=1e-9))
    [stats] = glob.glob(str(tmp_path / "root" / "StatisticsGen" / "statistics" / "*" / "Split-train" / "FeatureStats.pb"))
    import tensorflow_data_validation as tfdv
    assert tfdv.load_stats_binary(stats).datasets[0].num_examples == 0  # the sample really was empty
    msg = str(err.value)
    assert "feature 'coupon_code'" in msg and "feature 'device'" in msg and "smart_tv" in msg
