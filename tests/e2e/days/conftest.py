"""The e2e days, shared by every module in this folder: the Airflow runs are the expensive part.
Under pytest-xdist the whole folder runs on one worker (tests/conftest.py), so they run once."""
import datetime as dt
import os

import pytest
import yaml

from loggen import write_days
from pipeline_components.orchestration import airflow_local
from configs import load_config
from tests.waits import UNTIMED_SERVING_CHECK

DAY1 = dt.date(2026, 11, 20)
DAY2 = DAY1 + dt.timedelta(days=1)
IMPRESSIONS = 20_000


def config_with_floor(home, name, floor, epochs=3, selection=False):
    path = os.path.join(home, f"{name}.yaml")
    trainer = {"epochs": epochs, "early_stopping": {"holdout_percent": 10, "patience": epochs},
               "model_params": {"l2_embedding": 1.0, "l2_embedding_scope": "batch"}}
    if selection:  # instance selection for partner_app, small: the Trainer's extra work stays a few seconds
        trainer["instance_selection"] = {"target_scenes": ["partner_app"], "source_rows": 3000, "episodes": 2}
    with open(path, "w") as fh:
        # 4,000 eval impressions: a wide calibration band, as the floors are low (the gate's own
        # test, test_calibration_gate.py, applies the default band).
        # Early stopping on a 10 % holdout, with patience enough that every epoch runs (the summary test);
        # DIN's batch embedding penalty, so the Trainer counts ids before training (configs/more_epochs.yaml).
        yaml.safe_dump({"trainer": trainer, "serving_check": UNTIMED_SERVING_CHECK,
                        "evaluator": {"auc_floor": {"ctr": floor, "cvr": 0.0, "ctcvr": floor},
                                      "calibration_band": {"overall": [0.5, 2.0], "scene": [0.25, 4.0]}}}, fh)
    return load_config(path, home)


@pytest.fixture(scope="session")
def home(tmp_path_factory):
    home = str(tmp_path_factory.mktemp("e2e"))
    write_days(os.path.join(home, "logs"), os.path.join(home, "truth"), DAY1, 2, IMPRESSIONS, progress=None)
    return home


@pytest.fixture(scope="session")
def day1(home):
    config = config_with_floor(home, "lenient", 0.55, selection=True)
    env = airflow_local.prepare(config)
    airflow_local.dags_test(config.pipeline_name, DAY1.isoformat(), env,
                            os.path.join(home, "airflow_day1.log"))
    return config
