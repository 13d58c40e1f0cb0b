"""Airflow DAG: the daily ranking pipeline. Thin by design: read config, call the factory.

Each run's logical date selects that day's span through the ``run_date``
runtime parameter (rendered from ``{{ ds }}``; a manual trigger may pass
``{"run_date": "YYYY-MM-DD"}`` as conf). ``max_active_runs=1`` because ML
Metadata lives in SQLite, which locks under parallel TFX tasks.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import datetime  # noqa: E402

from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig  # noqa: E402

from pipeline_components.config import load_config  # noqa: E402
from pipeline_components.pipeline import create_pipeline, run_date_parameter  # noqa: E402

_config = load_config()
_airflow = _config.raw.get("airflow", {})

DAG = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config={
    "schedule": _airflow.get("schedule", "@daily"),
    "start_date": datetime.datetime.fromisoformat(str(_airflow.get("start_date", "2026-11-01"))),
    "catchup": bool(_airflow.get("catchup", False)),
    "max_active_runs": 1,
    "default_args": {"retries": int(_airflow.get("retries", 0)), "owner": "ranking"},
    "tags": ["tfx", "ranking"],
    "doc_md": __doc__,
})).run(create_pipeline(_config, run_date_parameter()))
