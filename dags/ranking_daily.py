"""Airflow DAG: the daily ranking pipeline. Thin by design: read the config, build from the
compiled pipeline. No TFX or TensorFlow import here (parse time: README, "Light DAG files");
``rankpipe compile`` (run by every rankpipe Airflow command) writes what this reads.
"""
from pipeline_components.orchestration.airflow_dags import daily_dag
from configs import load_config

DAG = daily_dag(load_config())
