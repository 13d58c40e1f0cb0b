import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

# Airflow reads its home at import time: never let tests touch ~/airflow (nor leave this one behind).
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="rankpipe-airflow-")
atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], True)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"] = "300"

import datetime as dt  # noqa: E402

import pytest  # noqa: E402

from tests import waits  # noqa: E402

SMALL_DAY = dt.date(2026, 11, 20)


@pytest.fixture(scope="session")
def small_logs(tmp_path_factory):
    """Two days of small logs shared by the tests that only read them."""
    from loggen import write_days
    root = tmp_path_factory.mktemp("logs")
    counts = write_days(str(root / "logs"), str(root / "truth"), SMALL_DAY, 2, 4000, progress=None)
    return {"logs": str(root / "logs"), "truth": str(root / "truth"), "counts": counts, "start": SMALL_DAY}


def pytest_configure(config):
    """Times the calibration workload once, in the process that starts the suite (pytest-xdist's
    workers get the result from it), so every wait and ceiling in the tests scales with this
    machine's speed today (tests/waits.py). RANKPIPE_TEST_SLOWNESS set by hand wins."""
    worker = getattr(config, "workerinput", None)
    if worker is not None and waits.SLOWNESS_ENV in worker:
        os.environ[waits.SLOWNESS_ENV] = worker[waits.SLOWNESS_ENV]
    elif waits.SLOWNESS_ENV not in os.environ:
        os.environ[waits.SLOWNESS_ENV] = f"{waits.calibrate():.2f}"


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist
def pytest_configure_node(node):
    node.workerinput[waits.SLOWNESS_ENV] = os.environ[waits.SLOWNESS_ENV]


def pytest_report_header(config):
    return f"machine speed: waits and ceilings x{waits.slowness():.2f} ({waits.SLOWNESS_ENV}, tests/waits.py)"


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"waits and ceilings were scaled x{waits.slowness():.2f} for this machine's speed "
                                f"({waits.SLOWNESS_ENV}={os.environ.get(waits.SLOWNESS_ENV)})")


def pytest_collection_modifyitems(config, items):
    """The longest units first (see HEAVY_FIRST), so the suite does not end waiting on one of them.
    pytest-timeout's per-test backstop (``timeout`` in pyproject.toml, over 3x the slowest test's
    need on the reference machine) scales like every other ceiling: a hung test fails alone."""
    items.sort(key=lambda item: next((i for i, prefix in enumerate(HEAVY_FIRST) if item.nodeid.startswith(prefix)),
                                     len(HEAVY_FIRST)))
    backstop = waits.scaled(float(config.getini("timeout") or 0))
    for item in items:
        if backstop and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(backstop))


E2E_DAYS = "tests/e2e/days/"
# The units that take longest (from the --durations table), longest first; the rest keep their order.
HEAVY_FIRST = (E2E_DAYS, "tests/e2e/test_browser_backfill.py", "tests/e2e/test_beam_runners.py",
               "tests/e2e/test_home_after_move.py",
               "tests/e2e/test_killed_tasks.py",
               "tests/e2e/test_adult_samples.py", "tests/e2e/test_three_step_funnel.py",
               "tests/pipeline_components/orchestration/test_airflow_ui.py",
               "tests/trainer/test_mirrored.py", "tests/trainer/test_multi_domain.py",
               "tests/pipeline_components/test_add_feature.py")


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: absent with -p no:xdist
def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist, units of work that share their expensive fixtures go to one worker:
    tests/e2e/days as one unit (the Airflow-run days are session fixtures), every other module as
    one unit (its module-scoped fixtures, e.g. a trained model or a compiled pipeline, built once
    instead of once per worker). Units go out in collection order, the longest first
(pytest_collection_modifyitems). (xdist's loadgroup marks tests by
    rewriting Item._nodeid, which pytest 9.2 no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep HEAVY_FIRST's order, not "most tests first"

    class SharedFixturesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return "e2e_days" if nodeid.startswith(E2E_DAYS) else nodeid.split("::", 1)[0]

    return SharedFixturesTogether(config, log)
