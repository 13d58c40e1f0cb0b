"""The Trainer's holdout for early stopping: a fixed share of the window's records, never trained on."""
import numpy as np
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
    ds = make_dataset([str(path)], {"x": tf.io.FixedLenFeature([], tf.float32)},
                      {"click": tf.io.FixedLenFeature([], tf.int64),
                       "impression_id": tf.io.FixedLenFeature([], tf.string)},
                      lambda raw: raw, ["x"], {"ctr": "click"}, batch_size=64, keep=["impression_id"], **kwargs)
    return [i.decode() for x, _ in ds for i in x["impression_id"].numpy()]


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
