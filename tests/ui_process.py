"""Starting and stopping `rankpipe ui` in tests: its output lines, and no process left behind."""
import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from configs import REPO_ROOT
from tests.waits import scaled

# The longest silent step of `rankpipe ui` on the reference machine: `airflow db migrate` on a new
# database, about a minute beside the other test worker.
START_STALL_S = 240


def read_lines(proc):
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    return lines


def wait_for_line(lines, pattern, seen, stall_s, proc=None):
    """The first output line matching pattern. Each line is progress: fails when `rankpipe ui`
    printed nothing for stall_s (scaled to this machine), or at once when it exited."""
    limit = scaled(stall_s)
    since = time.monotonic()
    while time.monotonic() - since < limit:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if proc is not None and proc.poll() is not None and lines.empty():
                pytest.fail(f"rankpipe ui exited with {proc.returncode} before printing {pattern!r}; output:\n"
                            f"{''.join(seen)}")
            continue
        seen.append(line)
        since = time.monotonic()
        match = re.search(pattern, line)
        if match:
            return match
    pytest.fail(f"no line matching {pattern!r} and no output for {limit:.0f}s; output so far:\n{''.join(seen)}")


def processes_of(home):
    """PIDs whose environment names this home's Airflow (the UI's scheduler, web server and their children)."""
    marker = f"AIRFLOW_HOME={os.path.join(home, 'airflow')}".encode()
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if marker in fh.read().split(b"\0"):
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


class UI:
    def __init__(self, proc, url):
        self.proc, self.url, self.seen = proc, url, []
        self.lines = read_lines(proc)
        self.password = None
        self.returncode = None
        self.leftover = []

    def check_alive(self):
        """Fails at once, with its output, when `rankpipe ui` stopped (e.g. the scheduler died)."""
        if self.proc.poll() is not None:
            while not self.lines.empty():
                self.seen.append(self.lines.get())
            pytest.fail(f"rankpipe ui exited with {self.proc.returncode}:\n{''.join(self.seen)[-5000:]}")

    def wait_ready(self):
        self.password = wait_for_line(self.lines, r"admin user 'admin', password: (\S+)", self.seen,
                                 START_STALL_S, self.proc).group(1)
        wait_for_line(self.lines, r"\[ui\] ready: " + re.escape(self.url), self.seen, START_STALL_S, self.proc)
        return self


def process_group(pgid):
    """Live processes in a process group (a service started with setsid, and what it started)."""
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(pid))
    return alive


@contextlib.contextmanager
def running_ui(home, port, config=None, extra_args=(), others=lambda: set()):
    """`rankpipe ui` on 127.0.0.1:port; on exit Ctrl-C, then SIGKILL whatever of this home's Airflow is
    left, except ``others()``: the processes of this home that something else started and stops."""
    cli = os.path.join(os.path.dirname(sys.executable), "rankpipe")
    args = [cli, "--home", home] + (["--config", config] if config else []) + ["ui", "--port", str(port),
                                                                               *extra_args]
    proc = subprocess.Popen(args, cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ui = UI(proc, f"http://127.0.0.1:{port}")
    try:
        yield ui
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            ui.returncode = proc.wait(timeout=scaled(90))
        except subprocess.TimeoutExpired:
            proc.kill()
        ui.leftover = sorted(set(processes_of(home)) - set(others()))
        for pid in ui.leftover:  # never leak a scheduler into the rest of the suite
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
