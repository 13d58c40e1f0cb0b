"""Airflow DAG: backfill the daily ranking pipeline over a date range from a form
(Airflow 2.10 has no backfill button). See pipeline_components/orchestration/airflow_dags.py."""
from pipeline_components.orchestration.airflow_dags import backfill_dag
from configs import load_config

DAG = backfill_dag(load_config())
