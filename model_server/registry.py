"""Loaded model versions and the swap to a newly pushed one.

A request takes a reference to one ``LoadedModel`` when it starts and uses it
to the end, so swapping ``current`` never disturbs in-flight requests: the old
version is released once the last request holding it returns. A new version is
loaded completely (and warmed with one call) before it becomes current; if it
fails to load, the server keeps serving the old one and reports the error.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Dict, Optional

import tensorflow as tf

from model_server import versions as versions_lib

log = logging.getLogger("model_server")
RAW_SIGNATURE = "serving_raw"   # trainer/run.py exports it next to serving_default


@dataclasses.dataclass
class LoadedModel:
    version: int
    stamp: float
    model: object
    serving_default: object
    serving_raw: Optional[object]
    raw_inputs: Dict[str, tf.DType]   # raw feature -> dtype, from the serving_raw signature
    loaded_at: float


def load_version(model_dir: str, version: int) -> LoadedModel:
    path = os.path.join(model_dir, str(version))
    stamp = versions_lib.version_stamp(model_dir, version)
    model = tf.saved_model.load(path)
    if "serving_default" not in model.signatures:
        raise ValueError(f"{path} has no serving_default signature; signatures: {list(model.signatures)}")
    raw = model.signatures.get(RAW_SIGNATURE)
    raw_inputs = {}
    if raw is not None:
        _, kwargs = raw.structured_input_signature
        raw_inputs = {name: spec.dtype for name, spec in kwargs.items()}
    loaded = LoadedModel(version, stamp, model, model.signatures["serving_default"], raw, raw_inputs, time.time())
    loaded.serving_default(examples=tf.constant([b""], tf.string)[:0])  # warm up: trace and initialise tables
    return loaded


class Registry:
    """The versions a server holds: the current one plus a few recent ones for /versions/N."""

    def __init__(self, model_dir: str, keep: int = 3):
        self.model_dir = model_dir
        self.keep = keep
        self._lock = threading.Lock()
        self._loaded: "OrderedDict[int, LoadedModel]" = OrderedDict()
        self._current: Optional[LoadedModel] = None
        self.errors: Dict[int, str] = {}

    @property
    def current(self) -> Optional[LoadedModel]:
        return self._current

    def get(self, version: Optional[int] = None) -> Optional[LoadedModel]:
        if version is None:
            return self._current
        with self._lock:
            hit = self._loaded.get(version)
        if hit is not None:
            return hit
        if version not in versions_lib.list_versions(self.model_dir):
            return None
        return self._add(load_version(self.model_dir, version), make_current=False)

    def loaded_versions(self) -> Dict[int, LoadedModel]:
        with self._lock:
            return dict(self._loaded)

    def _add(self, loaded: LoadedModel, make_current: bool) -> LoadedModel:
        with self._lock:
            self._loaded[loaded.version] = loaded
            self._loaded.move_to_end(loaded.version)
            if make_current:
                self._current = loaded
            while len(self._loaded) > self.keep:
                oldest = next(iter(self._loaded))
                if self._current is not None and oldest == self._current.version:
                    self._loaded.move_to_end(oldest)
                    oldest = next(iter(self._loaded))
                del self._loaded[oldest]
        return loaded

    def refresh(self) -> Optional[LoadedModel]:
        """Loads and swaps to the target version (pinned, else newest) if it changed."""
        target = versions_lib.target_version(self.model_dir)
        if target is None:
            return self._current
        try:
            stamp = versions_lib.version_stamp(self.model_dir, target)
        except FileNotFoundError:
            self.errors[target] = f"version {target} has no saved_model.pb in {self.model_dir}"
            return self._current
        cur = self._current
        if cur is not None and cur.version == target and cur.stamp == stamp:
            return cur
        with self._lock:
            cached = self._loaded.get(target)
        if cached is not None and cached.stamp == stamp:
            loaded = cached
        else:
            t0 = time.time()
            try:
                loaded = load_version(self.model_dir, target)
            except Exception as e:  # keep serving the old version
                if self.errors.get(target) != str(e):
                    log.error("could not load version %s (still serving %s): %s", target,
                              cur.version if cur else None, e)
                self.errors[target] = str(e)
                return cur
            log.info("loaded version %s in %.1fs", target, time.time() - t0)
        self.errors.pop(target, None)
        self._add(loaded, make_current=True)
        log.info("serving version %s (was %s)", target, cur.version if cur else None)
        return loaded

    def watch(self, poll_seconds: float, stop: threading.Event) -> threading.Thread:
        def loop():
            while not stop.wait(poll_seconds):
                try:
                    self.refresh()
                except Exception:  # a watcher that dies silently would freeze the served version
                    log.exception("version refresh failed")
        thread = threading.Thread(target=loop, name="version-watcher", daemon=True)
        thread.start()
        return thread
