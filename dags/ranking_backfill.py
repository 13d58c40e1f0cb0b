"""Airflow DAG: backfill the daily ranking pipeline over a date range from a form
(Airflow 2.10 has no backfill button). See pipeline_components/airflow_dags.py."""
from pipeline_components.airflow_dags import backfill_dag
from pipeline_components.config import load_config

DAG = backfill_dag(load_config())
