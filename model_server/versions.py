"""Version directories of one model, and the pin that rolls back to an older one.

Versions are the span dates as integers (YYYYMMDD, see pipeline_components/
span_pusher.py), so "newest" is "largest". A version directory counts only
once its ``saved_model.pb`` exists: the pusher renames a complete directory
into place, and TF Serving uses the same rule.
"""
from __future__ import annotations

import json
import os
from typing import List, Optional

PIN_FILE = "PINNED"


def list_versions(model_dir: str) -> List[int]:
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(name) for name in os.listdir(model_dir)
                  if name.isdigit() and os.path.exists(os.path.join(model_dir, name, "saved_model.pb")))


def pinned_version(model_dir: str) -> Optional[int]:
    path = os.path.join(model_dir, PIN_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return int(json.load(fh)["version"])


def target_version(model_dir: str) -> Optional[int]:
    """The version to serve: the pinned one while a pin exists, else the newest."""
    pin = pinned_version(model_dir)
    if pin is not None:
        return pin
    versions = list_versions(model_dir)
    return versions[-1] if versions else None


def pin(model_dir: str, version: int) -> None:
    versions = list_versions(model_dir)
    if version not in versions:
        raise ValueError(f"version {version} is not in {model_dir}; available versions: {versions or 'none'}")
    tmp = os.path.join(model_dir, f".{PIN_FILE}.tmp")
    with open(tmp, "w") as fh:
        json.dump({"version": version}, fh)
    os.replace(tmp, os.path.join(model_dir, PIN_FILE))  # atomic: the server never reads half a pin


def unpin(model_dir: str) -> bool:
    path = os.path.join(model_dir, PIN_FILE)
    if os.path.exists(path):
        os.remove(path)
        return True
    return False


def version_stamp(model_dir: str, version: int) -> float:
    """Changes when a rerun of the same day replaces the version's directory."""
    return os.stat(os.path.join(model_dir, str(version), "saved_model.pb")).st_mtime_ns
