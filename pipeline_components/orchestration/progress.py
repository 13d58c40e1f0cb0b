"""Per-task progress of an `airflow dags test` run, read from its log as it grows.

Why: a day runs for minutes, and `dags test` writes everything to its log
file; without this the terminal stays silent until the day ends. The log's
``[DAG TEST] starting task_id=…`` / ``end task task_id=…`` lines (Airflow 2.10)
say which task runs; the same lines give the benchmarks each task's wall time.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import subprocess
import time
from typing import Callable, List, Optional

_LINE = re.compile(r"^\[(?P<ts>[0-9T:.+\-]+)\].*\[DAG TEST\] (?P<what>starting|end task) task_id=(?P<task>\S+)")
_FAILED = re.compile(r"Marking task as (?P<state>FAILED|UP_FOR_RETRY)\. dag_id=\S+, task_id=(?P<task>[^,]+)")


@dataclasses.dataclass
class TaskSpan:
    task: str
    start: dt.datetime
    end: Optional[dt.datetime] = None
    failed: bool = False

    @property
    def seconds(self) -> Optional[float]:
        return (self.end - self.start).total_seconds() if self.end else None


def _ts(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


class _Parser:
    """Reads a `dags test` log line by line, keeping each task's span (so a growing log is read once)."""

    def __init__(self):
        self.spans: List[TaskSpan] = []
        self._open: dict = {}

    def feed(self, line: str) -> Optional[TaskSpan]:
        """Returns the span that this line started or ended, if any."""
        m = _LINE.match(line)
        if m:
            if m["what"] == "starting":
                self._open[m["task"]] = TaskSpan(m["task"], _ts(m["ts"]))
                self.spans.append(self._open[m["task"]])
                return self.spans[-1]
            if m["task"] in self._open:
                span = self._open.pop(m["task"])
                span.end = _ts(m["ts"])
                return span
            return None
        f = _FAILED.search(line)
        if f and f["task"] in self._open:
            self._open[f["task"]].failed = True
        return None


def task_spans(lines) -> List[TaskSpan]:
    """The tasks of a `dags test` log in the order they started, with their start and end times."""
    parser = _Parser()
    for line in lines:
        parser.feed(line)
    return parser.spans


def follow(proc: subprocess.Popen, log_path: str, emit: Callable[[str], None], prefix: str = "",
           heartbeat_s: float = 30.0, poll_s: float = 0.5) -> int:
    """Prints a line when a task starts and ends (with its time), and every ``heartbeat_s``
    which task is still running; returns the process's exit code."""
    parser = _Parser()
    pos, buffer = 0, ""
    last_beat = time.monotonic()
    while True:
        done = proc.poll() is not None
        if os.path.exists(log_path):
            with open(log_path, errors="replace") as fh:
                fh.seek(pos)
                chunk = fh.read()
                pos = fh.tell()
            buffer += chunk
            *complete, buffer = buffer.split("\n")
            for line in complete:
                span = parser.feed(line)
                if span is None:
                    continue
                if span.end is None:
                    emit(f"{prefix}{span.task} ...")
                else:
                    emit(f"{prefix}{span.task} {'FAILED' if span.failed else 'done'} in {span.seconds:.1f}s")
        if done:
            return proc.returncode
        running = [s for s in parser.spans if s.end is None]
        if running and time.monotonic() - last_beat >= heartbeat_s:
            s = running[-1]
            emit(f"{prefix}{s.task} running for {(dt.datetime.now(dt.timezone.utc) - s.start).total_seconds():.0f}s")
            last_beat = time.monotonic()
        time.sleep(poll_s)
