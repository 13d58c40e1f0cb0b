"""The log join reads its logs through Beam's filesystem abstraction, so a ``gs://``, ``s3://`` or
``hdfs://`` logs root works unchanged on a cluster.

No object store is reachable here, so the logs root is put behind a URI scheme that only Beam's
``FileSystems`` can resolve: a ``FileSystem`` registered for ``rankpipe-mnt://`` that serves a local
folder. Any ``os.path``/``glob``/``open`` on the logs would find nothing at such a path; the
join must give exactly the examples and accounting it gives on the plain path. A grep keeps
the Beam-stage modules off local-only file calls.
"""
import datetime as dt
import json
import os
import re

import pandas as pd
import pytest
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem

from configs import REPO_ROOT
from pipeline_components.components.raw_logs import MissingLogsError
from tests.pipeline_components.components.join_helpers import read_examples, run_join

SCHEME = "rankpipe-mnt"
_ROOTS = {}  # the folder each mount name serves: rankpipe-mnt://<mount>/<path>


class MountedFileSystem(LocalFileSystem):
    """``rankpipe-mnt://<mount>/<path>`` = ``<folder of mount>/<path>``; every answer in URIs."""

    @classmethod
    def scheme(cls):
        return SCHEME

    @staticmethod
    def _local(uri):
        mount, _, rest = uri[len(SCHEME) + 3:].partition("/")
        return os.path.join(_ROOTS[mount], rest)

    @staticmethod
    def _uri(local):
        for mount, root in _ROOTS.items():
            if local == root or local.startswith(root + os.sep):
                return f"{SCHEME}://{mount}/{os.path.relpath(local, root)}"
        raise AssertionError(f"{local} is outside every mount")

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/")] + [p.strip("/") for p in paths])

    def split(self, path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def _url_dirname(self, url_or_path):
        return self.split(url_or_path)[0]

    def _list(self, dir_or_prefix):
        for folder, _, files in os.walk(self._local(dir_or_prefix)):
            for name in files:
                local = os.path.join(folder, name)
                yield FileMetadata(self._uri(local), os.path.getsize(local), os.path.getmtime(local))

    def _path_open(self, path, mode, mime_type="application/octet-stream", compression_type=None):
        return super()._path_open(self._local(path), mode, mime_type, compression_type)

    def exists(self, path):
        return super().exists(self._local(path))

    def metadata(self, path):
        meta = super().metadata(self._local(path))
        return FileMetadata(path, meta.size_in_bytes, meta.last_updated_in_seconds)


@pytest.fixture
def mounted_logs(small_logs):
    _ROOTS["logs"] = os.path.realpath(small_logs["logs"])
    yield f"{SCHEME}://logs"
    _ROOTS.pop("logs")


def _accounting(report):
    with open(os.path.join(report.uri, "join_report.json")) as fh:
        return json.load(fh)["accounting"]


def test_the_join_reads_a_logs_root_behind_a_uri_scheme_like_a_local_one(small_logs, mounted_logs, tmp_path):
    day = small_logs["start"].isoformat()
    assert not os.path.exists(mounted_logs) and not os.path.exists(f"{mounted_logs}/impressions")
    local_examples, local_report = run_join(small_logs["logs"], tmp_path / "local", day)
    uri_examples, uri_report = run_join(mounted_logs, tmp_path / "uri", day)

    def rows(examples):
        return read_examples(examples.uri).sort_values("impression_id").reset_index(drop=True)

    local_rows = rows(local_examples)
    assert len(local_rows) > 1000
    pd.testing.assert_frame_equal(rows(uri_examples), local_rows)
    assert _accounting(uri_report) == _accounting(local_report)


def test_a_missing_day_behind_a_uri_scheme_is_the_same_clear_error(small_logs, mounted_logs, tmp_path):
    absent = (small_logs["start"] + dt.timedelta(days=30)).isoformat()
    with pytest.raises(MissingLogsError, match=re.escape(f"{mounted_logs}/impressions/date={absent} does not exist")):
        run_join(mounted_logs, tmp_path / "missing", absent)


def test_an_unknown_scheme_is_beams_error_naming_the_path(tmp_path):
    with pytest.raises(ValueError, match=r"Unable to get filesystem .* nosuchfs://bucket/logs/impressions"):
        run_join("nosuchfs://bucket/logs", tmp_path / "unknown", "2026-11-20")


# Modules whose code runs in Beam stages or reads data paths in them (the log join and its
# readers/writers): file access goes through FileSystems or tf.io.gfile only.
BEAM_STAGE_MODULES = ("raw_logs.py", "join_beam.py", "join_logic.py", "log_join.py", "tfrecord_blocks.py")
LOCAL_ONLY = re.compile(r"(?<![\w.])open\(|\bos\.path\.(exists|isdir|isfile|getsize)\(|\bglob\.glob\(|"
                        r"\bos\.(listdir|makedirs|walk|remove|rename)\(|\bshutil\.")


def test_beam_stage_modules_touch_no_file_through_local_only_calls():
    folder = os.path.join(REPO_ROOT, "pipeline_components", "components")
    found = []
    for name in BEAM_STAGE_MODULES:
        with open(os.path.join(folder, name)) as fh:
            for number, line in enumerate(fh, 1):
                code = line.split("#", 1)[0]
                if LOCAL_ONLY.search(code) and not code.strip().startswith(("\"", "'")):
                    found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "local-only file calls in Beam stages (use FileSystems or tf.io.gfile):\n" + "\n".join(found)
