"""Per-task progress of `airflow dags test`, read from the log as it grows."""
import subprocess
import sys
import threading

from pipeline_components.orchestration.progress import follow, task_spans

LOG = """\
[2026-12-03T06:45:02.297+0000] {dag.py:4396} INFO - [DAG TEST] starting task_id=LogJoinExampleGen map_index=-1
[2026-12-03T06:45:40.000+0000] {log_join.py:1} INFO - log join for 2026-11-20: {}
[2026-12-03T06:45:52.998+0000] {taskinstance.py:353} INFO - Marking task as SUCCESS. dag_id=d, task_id=LogJoinExampleGen, run_id=r
[2026-12-03T06:45:53.015+0000] {dag.py:4410} INFO - [DAG TEST] end task task_id=LogJoinExampleGen map_index=-1
[2026-12-03T06:45:53.209+0000] {dag.py:4396} INFO - [DAG TEST] starting task_id=StatisticsGen map_index=-1
[2026-12-03T06:46:10.000+0000] {taskinstance.py:353} INFO - Marking task as FAILED. dag_id=d, task_id=StatisticsGen, run_id=r
[2026-12-03T06:46:10.500+0000] {dag.py:4410} INFO - [DAG TEST] end task task_id=StatisticsGen map_index=-1
"""


def test_task_spans_read_start_end_and_failure_from_the_log():
    spans = task_spans(LOG.splitlines())
    assert [s.task for s in spans] == ["LogJoinExampleGen", "StatisticsGen"]
    assert abs(spans[0].seconds - 50.718) < 1e-6 and not spans[0].failed
    assert spans[1].failed and abs(spans[1].seconds - 17.291) < 1e-6


def test_an_unfinished_task_has_no_end():
    [span] = task_spans(LOG.splitlines()[:2])
    assert span.end is None and span.seconds is None


def test_follow_reports_each_task_as_the_log_grows(tmp_path):
    """A child process writes the log one line at a time (each after the previous one is in the
    file), so follow() reads a growing log in pieces."""
    log = tmp_path / "dags_test.log"
    lines = LOG.splitlines()
    script = (
        "import os, sys, time\n"
        "lines = sys.argv[2:]\n"
        "for i, line in enumerate(lines):\n"
        "    with open(sys.argv[1], 'a') as fh: fh.write(line + '\\n')\n"
        "    while not os.path.exists(sys.argv[1] + f'.seen{i}'): time.sleep(0.01)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(log)] + lines)
    emitted = []

    def acker():   # lets the child write its next line once this one is in the file
        i = 0
        while proc.poll() is None and i < len(lines):
            if log.exists() and len(log.read_text().splitlines()) > i:
                (tmp_path / f"dags_test.log.seen{i}").touch()
                i += 1
            else:
                threading.Event().wait(0.01)

    t = threading.Thread(target=acker)
    t.start()
    rc = follow(proc, str(log), emitted.append, prefix="[airflow] 2026-11-20 ", heartbeat_s=3600, poll_s=0.01)
    t.join()
    assert rc == 0
    assert emitted == ["[airflow] 2026-11-20 LogJoinExampleGen ...",
                       "[airflow] 2026-11-20 LogJoinExampleGen done in 50.7s",
                       "[airflow] 2026-11-20 StatisticsGen ...",
                       "[airflow] 2026-11-20 StatisticsGen FAILED in 17.3s"]


def test_follow_returns_a_failing_exit_code(tmp_path):
    log = tmp_path / "empty.log"
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert follow(proc, str(log), lambda _: None, poll_s=0.01) == 3
