"""A real browser (Debian's Chromium through Selenium and Debian's ChromeDriver) backfills two
days from the Airflow UI: log in, switch the daily DAG on, fill the backfill form, submit; the
scheduler (SequentialExecutor, SQLite) runs both days in order; then the pushed models and the
ML Metadata of both spans are checked. Loopback only; every wait is bounded.

Screenshots of each step are written to $RANKPIPE_SCREENSHOTS (default: the test's tmp dir);
the README's come from this test.
"""
import datetime as dt
import os
import sqlite3
import time

import pytest
import yaml

from loggen import write_days
from pipeline_components import report
from pipeline_components.airflow_dags import daily_run_id
from pipeline_components.config import load_config
from tests.ports import free_ports
from tests.ui_process import running_ui

pytestmark = pytest.mark.e2e

START, END = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
IMPRESSIONS = 8_000
RUNS_TIMEOUT_S = 1500
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    assert not missing, f"{missing} missing: run `bash scripts/system_packages.sh` (scripts/test.sh does)"
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def _config(home):
    path = os.path.join(home, "backfill.yaml")
    with open(path, "w") as fh:
        # No schedule: switching the daily DAG on must not start a scheduled run beside the backfill.
        # Floors at 0 and a lenient no-regression threshold: both tiny days are blessed and pushed.
        yaml.safe_dump({"airflow": {"schedule": None, "backfill_poke_seconds": 30},
                        "trainer": {"epochs": 1},
                        "evaluator": {"auc_floor": 0.0, "max_auc_drop": 1.0}}, fh)
    return load_config(path, home)


def _runs(home, dag_id):
    with sqlite3.connect(os.path.join(home, "airflow", "airflow.db")) as db:
        return dict(db.execute("select run_id, state from dag_run where dag_id = ?", (dag_id,)).fetchall())


def _wait(predicate, timeout_s, what, interval_s=5):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


def _shot(driver, shots, name):
    os.makedirs(shots, exist_ok=True)
    driver.save_screenshot(os.path.join(shots, f"{name}.png"))


def _failed_task_logs(home):
    logs = []
    for folder, _, files in os.walk(os.path.join(home, "airflow", "logs", "dag_id=ranking_daily")):
        for name in files:
            with open(os.path.join(folder, name)) as fh:
                text = fh.read()
            if "failed for run_date" in text:
                logs.append(f"{folder}/{name}:\n" + text[-3000:])
    return "\n".join(logs)


def test_backfill_two_days_from_the_browser(browser, tmp_path):
    from selenium.webdriver.common.by import By
    home, [port] = str(tmp_path / "home"), free_ports(1)
    shots = os.environ.get("RANKPIPE_SCREENSHOTS") or str(tmp_path / "screenshots")
    write_days(os.path.join(home, "logs"), os.path.join(home, "truth"), START, 2, IMPRESSIONS, progress=None)
    config = _config(home)
    with running_ui(home, port, config=config.path) as ui:
        ui.wait_ready()
        b = browser
        b.get(f"{ui.url}/login/")
        b.find_element(By.ID, "username").send_keys("admin")
        b.find_element(By.ID, "password").send_keys(ui.password)
        _shot(b, shots, "01_login")
        b.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
        _wait(lambda: b.current_url.rstrip("/").endswith("/home"), 60, "the DAG list after login", 1)

        def both_listed():
            b.get(f"{ui.url}/home")
            return b.find_elements(By.ID, "toggle-ranking_daily") and b.find_elements(
                By.ID, "toggle-ranking_daily_backfill")
        _wait(both_listed, 240, "both DAGs in the DAG list")
        toggle = b.find_element(By.ID, "toggle-ranking_daily")
        assert not toggle.is_selected(), "DAGs start paused"
        b.execute_script("arguments[0].click();", toggle)  # switch the daily DAG on
        _wait(lambda: b.find_element(By.ID, "toggle-ranking_daily").is_selected(), 30, "the toggle", 1)
        _shot(b, shots, "02_dags")

        b.get(f"{ui.url}/dags/ranking_daily_backfill/trigger")
        for name, value in (("start", START), ("end", END)):
            field = b.find_element(By.ID, f"element_{name}")
            field.clear()
            field.send_keys(value.isoformat())
        b.find_element(By.TAG_NAME, "h2").click()  # leave the field: the form updates its conf
        assert b.find_element(By.ID, "element_push").is_selected()
        _shot(b, shots, "03_backfill_form")
        b.find_element(By.XPATH, "//button[@type='submit' and contains(., 'Trigger')]").click()
        _wait(lambda: _runs(home, "ranking_daily_backfill"), 60, "the backfill run")

        def both_days_done():
            daily = _runs(home, "ranking_daily")
            if "failed" in daily.values() or "failed" in _runs(home, "ranking_daily_backfill").values():
                pytest.fail(f"a run failed: {daily}\n{_failed_task_logs(home)}")
            return len(daily) == 2 and set(daily.values()) == {"success"} and daily
        daily = _wait(both_days_done, RUNS_TIMEOUT_S, "both daily runs to succeed", 15)
        _wait(lambda: set(_runs(home, "ranking_daily_backfill").values()) == {"success"}, 180,
              "the backfill run to succeed")
        b.get(f"{ui.url}/dags/ranking_daily/grid")
        time.sleep(3)
        _shot(b, shots, "04_daily_runs")
        b.get(f"{ui.url}/dags/ranking_daily_backfill/grid")
        time.sleep(3)
        _shot(b, shots, "05_backfill_run")
    assert ui.returncode == 0 and ui.leftover == []

    # Each daily run processed exactly its own day, oldest first.
    [backfill_run] = _runs(home, "ranking_daily_backfill")
    assert sorted(daily) == [daily_run_id(backfill_run, d) for d in (START, END)]
    with sqlite3.connect(os.path.join(home, "airflow", "airflow.db")) as db:
        order = [r for (r,) in db.execute("select run_id from dag_run where dag_id = 'ranking_daily' "
                                          "order by start_date")]
    assert order == sorted(daily)
    runs = report.collect_runs(config)
    assert [r.span_date for r in runs] == [START.isoformat(), END.isoformat()]
    assert runs[0].trained_on == [START.isoformat()]
    assert runs[1].trained_on == [START.isoformat(), END.isoformat()]
    assert all(r.blessed and r.pushed for r in runs)
    versions = [d.strftime("%Y%m%d") for d in (START, END)]
    assert sorted(os.listdir(config.serving_dir)) == versions
    assert [r.pushed_destination for r in runs] == [os.path.join(config.serving_dir, v) for v in versions]
    for v in versions:
        assert os.path.exists(os.path.join(config.serving_dir, v, "saved_model.pb"))
