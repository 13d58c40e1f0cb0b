"""Choosing Airflow's executor and database and ML Metadata's backend from the config: the
embedded default, the production combination, and the combinations that would lock or lose
data refused with the setting to change. No database server needed here (see
tests/e2e/test_browser_backfill.py for the real ones: PostgreSQL and MariaDB)."""
import pytest
import yaml

from pipeline_components.orchestration import compiled
from pipeline_components.orchestration.airflow_local import airflow_env, describe, settings
from configs import load_config

PG = "postgresql+psycopg2://rankpipe@127.0.0.1:5433/airflow"
MYSQL = {"backend": "mysql", "mysql": {"host": "127.0.0.1", "port": 3307, "database": "mlmd", "user": "rankpipe",
                                       "password_env": "TEST_MLMD_PASSWORD"}}


def _config(tmp_path, **overrides):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(overrides))
    return load_config(str(path), str(tmp_path / "home"))


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch):
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    monkeypatch.delenv("TEST_MLMD_PASSWORD", raising=False)


def test_the_embedded_default_is_sqlite_and_sequential(tmp_path):
    config = _config(tmp_path)
    env = airflow_env(config)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "SequentialExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{config.home}/airflow/airflow.db"
    assert describe(config) == "Airflow on SQLite, SequentialExecutor; ML Metadata on SQLite"
    assert config.metadata_connection_config().sqlite.filename_uri == config.metadata_path


def test_production_is_postgres_local_executor_and_mysql_metadata(tmp_path, monkeypatch):
    config = _config(tmp_path, metadata=MYSQL,
                     airflow={"executor": "LocalExecutor", "database_url": PG, "max_active_runs": 2})
    env = airflow_env(config)
    assert (env["AIRFLOW__CORE__EXECUTOR"], env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]) == ("LocalExecutor", PG)
    assert describe(config) == "Airflow on PostgreSQL, LocalExecutor; ML Metadata on MySQL"
    # A URL in the environment (it may hold a password) wins over the config's.
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", PG.replace("rankpipe@", "rankpipe:s3cret@"))
    assert settings(config)["url"].startswith("postgresql+psycopg2://rankpipe:s3cret@")


@pytest.mark.parametrize("airflow,metadata,match", [
    ({"executor": "LocalExecutor"}, MYSQL, "database_url"),
    ({"executor": "LocalExecutor", "database_url": PG}, None, "metadata.backend: mysql"),
    ({"max_active_runs": 2}, None, "metadata.backend: mysql"),
])
def test_combinations_that_would_lock_are_refused_with_the_setting_to_change(tmp_path, airflow, metadata, match):
    config = _config(tmp_path, airflow=airflow, **({"metadata": metadata} if metadata else {}))
    with pytest.raises(ValueError, match=match):
        airflow_env(config)


def test_the_mlmd_password_comes_from_the_environment_only(tmp_path, monkeypatch):
    config = _config(tmp_path, metadata=MYSQL)
    assert config.metadata_connection_config(with_password=False).mysql.password == ""
    with pytest.raises(ValueError, match=r"\$TEST_MLMD_PASSWORD is not set"):
        config.metadata_connection_config()
    monkeypatch.setenv("TEST_MLMD_PASSWORD", "pw-123")
    cfg = config.metadata_connection_config().mysql
    assert (cfg.host, cfg.port, cfg.database, cfg.user, cfg.password) == ("127.0.0.1", 3307, "mlmd", "rankpipe",
                                                                          "pw-123")


def test_the_compiled_pipeline_holds_no_password_and_parallel_days_keep_the_ordered_tail(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_MLMD_PASSWORD", "never-in-a-file")
    config = _config(tmp_path, metadata=MYSQL,
                     airflow={"executor": "LocalExecutor", "database_url": PG, "max_active_runs": 2})
    path = compiled.compile_pipeline(config)
    with open(path, "rb") as fh:
        assert b"never-in-a-file" not in fh.read()
    from tfx.orchestration.local import runner_utils
    deployment = runner_utils.extract_local_deployment_config(compiled.load(config))
    mysql = deployment.metadata_connection_config.database_connection_config.mysql
    assert (mysql.port, mysql.password) == (3307, "")

    from pipeline_components.orchestration.airflow_dags import daily_dag
    dag = daily_dag(config)
    assert dag.max_active_runs == 2
    ordered = {t.task_id: (t.depends_on_past, t.wait_for_downstream) for t in dag.tasks
               if t.depends_on_past or t.wait_for_downstream}
    assert ordered == {"Transform": (True, False), "Evaluator": (True, True), "SpanPusher": (True, False)}


CELERY = {"executor": "CeleryExecutor", "database_url": PG, "max_active_runs": 2}


def test_celery_takes_its_broker_from_the_config_or_the_environment_and_results_go_to_airflow_s_database(
        tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW__CELERY__BROKER_URL", raising=False)
    monkeypatch.delenv("AIRFLOW__CELERY__RESULT_BACKEND", raising=False)
    config = _config(tmp_path, metadata=MYSQL,
                     airflow={**CELERY, "celery": {"broker_url": "redis://127.0.0.1:6380/0", "worker_concurrency": 3}})
    env = airflow_env(config, base={})
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6380/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+{PG}"
    assert env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "3"
    # Each task records which worker ran it; the callable must import.
    module, _, name = env["AIRFLOW__CORE__HOSTNAME_CALLABLE"].rpartition(".")
    import importlib
    monkeypatch.setenv("RANKPIPE_WORKER_HOSTNAME", "worker7")
    assert getattr(importlib.import_module(module), name)() == "worker7"
    # A broker URL in the environment (it may hold a password) wins.
    monkeypatch.setenv("AIRFLOW__CELERY__BROKER_URL", "redis://:s3cret@10.0.0.5:6379/1")
    assert airflow_env(config)["AIRFLOW__CELERY__BROKER_URL"] == "redis://:s3cret@10.0.0.5:6379/1"


def test_celery_without_a_broker_is_refused_with_the_setting_to_change(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW__CELERY__BROKER_URL", raising=False)
    config = _config(tmp_path, metadata=MYSQL, airflow=CELERY)
    with pytest.raises(ValueError, match=r"airflow.celery.broker_url .*AIRFLOW__CELERY__BROKER_URL"):
        airflow_env(config)


def test_the_shipped_celery_config_is_celery_on_postgres_and_redis_with_mysql_metadata(tmp_path, monkeypatch):
    from configs import REPO_ROOT
    import os
    monkeypatch.delenv("AIRFLOW__CELERY__BROKER_URL", raising=False)
    config = load_config(os.path.join(REPO_ROOT, "configs", "celery.yaml"), str(tmp_path))
    chosen = settings(config, env={})
    assert (chosen["executor"], chosen["database"], chosen["broker_url"][:8]) == ("CeleryExecutor", "postgresql",
                                                                                 "redis://")
    assert config.metadata_backend == "mysql"


def test_a_relative_config_path_is_made_absolute_for_the_processes_that_inherit_it(tmp_path, monkeypatch):
    (tmp_path / "c.yaml").write_text("{}")
    monkeypatch.chdir(tmp_path)
    config = load_config("c.yaml", str(tmp_path / "home"))
    assert airflow_env(config, base={})["RANKPIPE_CONFIG"] == str(tmp_path / "c.yaml")
