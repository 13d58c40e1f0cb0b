"""Blocks of framed records written by Beam are TFRecord files that TensorFlow reads back, record for record."""
import glob

import apache_beam as beam
import pytest
import tensorflow as tf

from pipeline_components.components.tfrecord_blocks import WriteTFRecordBlocks, frame


@pytest.mark.parametrize("suffix,compression", [(".gz", "GZIP"), ("", "")])
def test_tensorflow_reads_the_blocks_back_in_order(tmp_path, suffix, compression):
    blocks = [[b"a", b"", b"x" * 70000], [bytes(range(256)) * 3], []]
    with beam.Pipeline(runner="FnApiRunner") as p:
        _ = (p | beam.Create([frame(b) for b in blocks], reshuffle=False)
             | WriteTFRecordBlocks(str(tmp_path / "data"), suffix))
    [path] = glob.glob(str(tmp_path / f"data-*{suffix}"))
    got = [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type=compression)]
    assert got == [r for b in blocks for r in b]


def test_a_corrupted_record_fails_its_checksum(tmp_path):
    data = bytearray(frame([b"hello world"]))
    data[14] ^= 0xFF   # a byte of the record's data (after the 8-byte length and its 4-byte CRC)
    path = tmp_path / "bad.tfrecord"
    path.write_bytes(bytes(data))
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(str(path)))
