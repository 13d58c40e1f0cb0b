"""The peer libraries the benchmarks measure against, installed beside the project, never into its lock.

DeepCTR 0.9.4 (the trainer's speed and trainability peer) and LightGBM 4.7.0 (the tabular baseline
of the quality benchmarks) are pinned here, the benchmark extra.

DeepCTR 0.9.4 declares dependencies (``h5py``, ``requests``, a TensorFlow range) that would move
the project's pinned stack, and it runs on the TensorFlow and tf_keras already installed, so it
goes in with ``--no-deps`` into ``.bench/`` under the repository root (git ignores it) and is put on
``sys.path`` only by the benchmarks that compare against it.
"""
from __future__ import annotations

import os
import subprocess
import sys

from configs import REPO_ROOT

# name -> requirements installed together with --no-deps (each one's other dependencies are in the lock)
PEERS = {"deepctr": ["deepctr==0.9.4"],
         "lightgbm": ["lightgbm==4.7.0", "narwhals==2.28.0"]}


def ensure(name: str, directory: str = os.path.join(REPO_ROOT, ".bench")) -> str:
    """Installs the peer on first use (needs the package registry) and puts it on ``sys.path``."""
    requirements = PEERS[name]
    target = os.path.join(directory, requirements[0].replace("==", "-"))
    if not all(os.path.isdir(os.path.join(target, r.split("==")[0])) for r in requirements):
        print(f"[peers] installing {' '.join(requirements)} (--no-deps) into {target}", flush=True)
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "--no-deps", "--target", target, *requirements], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"could not install {requirements} into {target} (the package registry must be "
                               f"reachable once):\n{done.stderr.strip()}")
    if target not in sys.path:
        sys.path.insert(0, target)
    return target
