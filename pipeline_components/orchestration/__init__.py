"""Running the compiled pipeline: the IR compiler and reader, the per-task node runner, the Airflow
DAG builders, and the local Airflow (scheduler, UI, databases) the CLI and tests start.

Nothing here defines the pipeline: editing these modules keeps the compiled pipeline current.
"""
