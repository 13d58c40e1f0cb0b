"""Training throughput per model at batch 1024: against DeepCTR, and the input pipeline's overhead.

    python -m benchmarks.train_throughput --rounds 3

Table 1 (``benchmarks/peer_speed.py``): examples/s on in-memory tensors of the project's models
(``MultiTaskModel``), the same models under a plain compiled ``fit``, and their DeepCTR 0.9.4
namesakes, in the configuration of ``../shared/PERFORMANCE.md``, alternating the three ``--rounds``
times; the median round is reported, with the ratios project / DeepCTR and project / plain.

Table 2: for each model of the zoo, ``--epochs``-epoch fits of one generated day's training
window (``--impressions``), timed epoch by epoch, alternating ``--rounds`` times between:
- the Trainer's own input pipeline (gzip TFRecords -> windows of ``shuffle_buffer`` rows ->
  parse -> Transform graph, cached in memory after the first epoch) feeding ``MultiTaskModel.fit``;
- the same model on the transformed window already held in memory, in a new batch order per epoch.
Overhead = 1 - trainer / in-memory examples/s, for the first epoch, for the later (cached) ones,
and over the whole fit. Graph tracing happens before the clocks start. Uses the day prepared by
``benchmarks.model_quality`` (same --workdir and size) or prepares one.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

from benchmarks.model_quality import MODEL_PARAMS, prepare, trainer_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impressions", type=int, default=1_000_000, help="table 2: the day's size")
    ap.add_argument("--epochs", type=int, default=3, help="table 2: epochs per timed fit")
    ap.add_argument("--models", nargs="+", default=list(MODEL_PARAMS))
    ap.add_argument("--workdir", default="/tmp/model-quality")
    ap.add_argument("--rounds", type=int, default=3, help="table 1: alternating rounds per model")
    ap.add_argument("--peer-models", nargs="+", default=["shared_bottom", "esmm", "mmoe", "ple"])
    ap.add_argument("--only", choices=["peer", "input"], help="print one table only")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores", flush=True)
    if args.only != "input":
        peer_table(args.peer_models, args.rounds)
    if args.only != "peer":
        input_table(args)


def peer_table(models, rounds: int) -> None:
    import numpy as np

    from benchmarks import peers, peer_speed
    peers.ensure("deepctr")
    data = peer_speed.synthetic()
    sides = ("project", "plain", "deepctr")
    print(f"\nTable 1: in-memory examples/s, {len(data.y['ctr']):,} rows, batch 1024, 1 warm-up + 2 timed epochs, "
          f"median of {rounds} alternating rounds")
    print("| model | project | plain fit | DeepCTR | project / DeepCTR | train_step cost vs plain |")
    print("|---|---|---|---|---|---|")
    for name in models:
        rates = {side: [] for side in sides}
        for _ in range(rounds):
            for side in sides:
                rates[side].append(peer_speed.fit_rate(side, name, data))
        med = {side: float(np.median(r)) for side, r in rates.items()}
        print(f"| {name} | {med['project']:,.0f} | {med['plain']:,.0f} | {med['deepctr']:,.0f} | "
              f"{med['project'] / med['deepctr']:.2f}× | {med['plain'] / med['project'] - 1:+.1%} |", flush=True)


def input_table(args) -> None:
    import numpy as np
    import tensorflow as tf

    from trainer import optimizers
    from trainer.balancing import MultiTaskModel
    from trainer.input_fn import training_inputs
    from trainer.models import build_model

    prep = prepare(args.workdir, 0.6, args.impressions)
    cfg = trainer_config("esmm", 0, 1)
    batch = int(cfg["batch_size"])
    inputs = training_inputs(cfg["feature_spec_path"], prep.transform_dir)
    labels = {h: cfg["heads"][h]["label"] for h in cfg["loss_weights"]}

    def files_ds(cache: str = "memory"):
        return inputs.dataset(prep.train_files, labels, batch, shuffle=True, seed=0,
                              shuffle_buffer=int(cfg["shuffle_buffer"]), cache=cache)

    # The whole transformed window in memory, as full batches in a fresh order every epoch.
    full = [b for b in files_ds("none") if len(b[1]["ctr"]) == batch]
    stacked = tf.nest.map_structure(lambda *t: tf.stack(t), *full)
    memory_ds = tf.data.Dataset.from_tensor_slices(stacked).shuffle(len(full), seed=0)
    rows = {"files": sum(int(len(y["ctr"])) for _, y in files_ds("none")), "memory": len(full) * batch}
    epochs = args.epochs
    print(f"\nTable 2: the Trainer's input pipeline (gzip TFRecords -> windows of {int(cfg['shuffle_buffer']):,} "
          f"-> parse + Transform graph, cached in memory after epoch 1) against the same model on the "
          f"transformed window held in memory; {rows['files']:,} training examples, batch {batch}, "
          f"{epochs} epochs, median of {args.rounds} alternating rounds")
    print("| model | in-memory ex/s | epoch 1 ex/s | epoch 1 overhead | later epochs ex/s | later overhead | "
          f"overhead over {epochs} epochs |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        tf.keras.utils.set_random_seed(0)
        model = build_model(name, inputs.features, MODEL_PARAMS[name])
        trainable = MultiTaskModel(model, cfg["loss_weights"])
        trainable.compile(optimizer=optimizers.make(cfg["optimizer"], cfg["learning_rate"]))
        for ds in (memory_ds, files_ds("none")):  # trace both input signatures before any clock runs
            trainable.fit(ds.take(3), epochs=1, verbose=0)
        seconds = {"files": [], "memory": []}
        for _ in range(args.rounds):
            for side in ("files", "memory"):
                clock = _EpochClock()
                trainable.fit(files_ds() if side == "files" else memory_ds, epochs=epochs, verbose=0,
                              callbacks=[clock.callback])
                seconds[side].append(clock.seconds)
        per_epoch = {side: np.median(np.array(s), axis=0) for side, s in seconds.items()}
        memory_rate = rows["memory"] / float(np.mean(per_epoch["memory"]))
        first = rows["files"] / float(per_epoch["files"][0])
        later = rows["files"] / float(np.mean(per_epoch["files"][1:]))
        overall = rows["files"] * epochs / float(np.sum(per_epoch["files"]))
        print(f"| {name} | {memory_rate:,.0f} | {first:,.0f} | {1 - first / memory_rate:.0%} | {later:,.0f} | "
              f"{1 - later / memory_rate:.0%} | {1 - overall / memory_rate:.0%} |", flush=True)


class _EpochClock:
    """Wall seconds of each epoch of one fit."""

    def __init__(self):
        import tf_keras as keras

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(cb, epoch, logs=None):
                self.start = time.time()

            def on_epoch_end(cb, epoch, logs=None):
                self.seconds.append(time.time() - self.start)
        self.callback = Callback()
        self.seconds: list = []
        self.start = 0.0


if __name__ == "__main__":
    main()
