"""The Trainer's holdout for early stopping: a fixed share of the window's records, never trained on."""
import numpy as np
import pytest
import tensorflow as tf

from trainer.input_fn import make_dataset


def _write(path, n):
    with tf.io.TFRecordWriter(str(path), options="GZIP") as w:
        for i in range(n):
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=[float(i)])),
                "impression_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"imp-{i}".encode()])),
                "click": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2]))})).SerializeToString())


def _ids(path, **kwargs):
    return [i.decode() for x, _ in _dataset(path, **kwargs) for i in x["impression_id"].numpy()]


def test_holdout_is_a_stable_disjoint_share_of_the_records(tmp_path):
    path = tmp_path / "part.gz"
    _write(path, 4000)
    train = _ids(path, shuffle=True, seed=1, holdout_percent=10)
    held = _ids(path, shuffle=False, holdout_percent=10, holdout=True)
    assert not set(train) & set(held)
    assert len(train) + len(held) == 4000 and len(set(train)) == len(train)
    assert 300 < len(held) < 500  # ~10 %
    assert sorted(_ids(path, shuffle=True, seed=2, holdout_percent=10)) == sorted(train)  # same records each epoch/run
    assert len(_ids(path, shuffle=False)) == 4000  # 0: no holdout
    np.testing.assert_array_equal(sorted(held), sorted(_ids(path, shuffle=False, holdout_percent=10, holdout=True)))


def _dataset(path, **kwargs):
    return make_dataset([str(path)], {"x": tf.io.FixedLenFeature([], tf.float32)},
                        {"click": tf.io.FixedLenFeature([], tf.int64),
                         "impression_id": tf.io.FixedLenFeature([], tf.string)},
                        lambda raw: raw, ["x"], {"ctr": "click"}, batch_size=64, keep=["impression_id"], **kwargs)


def _epoch(ds):
    sizes, rows = [], []
    for x, y in ds:
        sizes.append(len(y["ctr"]))
        rows.extend(int(v) for v in x["x"].numpy())
        assert [int(v) % 2 for v in x["x"].numpy()] == [int(c) for c in y["ctr"].numpy()]  # rows stay whole
    return sizes, rows


def test_shuffle_permutes_each_window_afresh_every_epoch_and_keeps_every_record(tmp_path):
    path = tmp_path / "part.gz"
    _write(path, 1000)
    ds = _dataset(path, shuffle=True, seed=3, shuffle_buffer=300)
    (sizes1, first), (sizes2, second) = _epoch(ds), _epoch(ds)
    assert sorted(first) == sorted(second) == list(range(1000))
    assert first != second and first != list(range(1000))
    assert sizes1 == sizes2 == [64] * 15 + [40]  # full batches across window edges; only the last is short
    # windows of 300 consecutive records: each record stays within its own window's positions
    assert all(i // 300 == pos // 300 for pos, i in enumerate(first))
    assert _epoch(_dataset(path, shuffle=True, seed=3, shuffle_buffer=300))[1] == first  # seeded


def test_cache_serves_later_epochs_without_the_files(tmp_path):
    for cache in ("memory", "disk"):
        path = tmp_path / f"{cache}.gz"
        _write(path, 500)
        cache_dir = tmp_path / f"cache-{cache}"
        cache_dir.mkdir()
        ds = _dataset(path, shuffle=True, seed=1, shuffle_buffer=200, cache=cache, cache_dir=str(cache_dir))
        first = _epoch(ds)[1]
        path.unlink()
        second = _epoch(ds)[1]
        assert sorted(second) == list(range(500)) and second != first, cache
        assert bool(list(cache_dir.iterdir())) == (cache == "disk")
    uncached = tmp_path / "none.gz"
    _write(uncached, 10)
    ds = _dataset(uncached, shuffle=True)
    _epoch(ds)
    uncached.unlink()
    with pytest.raises(tf.errors.NotFoundError):
        _epoch(ds)


def test_unknown_cache_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="input cache must be one of"):
        _dataset(tmp_path / "x.gz", shuffle=False, cache="ssd")
    from trainer.run import input_cache_setting
    assert input_cache_setting({}, epochs=3) == "memory"
    assert input_cache_setting({"input_cache": "disk"}, epochs=1) == "none"  # one epoch: nothing to reuse
    with pytest.raises(ValueError, match="trainer.input_cache must be one of"):
        input_cache_setting({"input_cache": "ssd"}, epochs=3)
