"""Training throughput per model at batch 1024: against DeepCTR, and the input pipeline's overhead.

    python -m benchmarks.train_throughput --impressions 200000 --steps 300 --rounds 3

Table 1 (``benchmarks/peer_speed.py``): examples/s on in-memory tensors of the project's models
(``MultiTaskModel``), the same models under a plain compiled ``fit``, and their DeepCTR 0.9.4
namesakes, in the configuration of ``../shared/PERFORMANCE.md``, alternating the three ``--rounds``
times; the median round is reported, with the ratios project / DeepCTR and project / plain.

Table 2: for each model of the zoo, two timed runs of ``--steps`` training steps after a
warm-up (graph tracing and the first fill of the shuffle buffer excluded):
- trainer: the Trainer's own input pipeline (gzip TFRecords -> shuffle ->
  parse -> Transform graph) feeding ``MultiTaskModel.fit``;
- in memory: the same model stepping on tensors already transformed and held
  in memory.
Overhead = 1 - trainer / in-memory examples/s. Uses the day prepared by
``benchmarks.model_quality`` (same --workdir) or prepares one.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

from benchmarks.model_quality import MODEL_PARAMS, prepare, trainer_config  # noqa: E402


class _StepClock:
    """Times steps WARMUP..WARMUP+steps of one fit: tracing and the shuffle buffer's first fill
    (200k examples read before the first batch) happen before the clock starts."""

    WARMUP = 5

    def __init__(self):
        import tf_keras as keras

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(cb, batch, logs=None):
                if batch + 1 == self.WARMUP:
                    self.start = time.time()
                self.end = time.time()
        self.callback = Callback()
        self.start = self.end = 0.0


def _fit_rate(model, dataset, steps: int, batch: int) -> float:
    clock = _StepClock()
    model.fit(dataset, steps_per_epoch=clock.WARMUP + steps, epochs=1, verbose=0, callbacks=[clock.callback])
    return steps * batch / (clock.end - clock.start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impressions", type=int, default=200_000)
    ap.add_argument("--steps", type=int, default=100)
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
    import tensorflow as tf
    import tf_keras as keras

    from trainer import optimizers
    from trainer.balancing import MultiTaskModel
    from trainer.input_fn import training_inputs
    from trainer.models import build_model

    prep = prepare(args.workdir, 0.6, args.impressions)
    cfg = trainer_config("esmm", 0, 1)
    batch = int(cfg["batch_size"])
    inputs = training_inputs(cfg["feature_spec_path"], prep.transform_dir)
    labels = {h: cfg["heads"][h]["label"] for h in cfg["loss_weights"]}
    files_ds = inputs.dataset(prep.train_files, labels, batch, shuffle=True, repeat=True,
                              shuffle_buffer=int(cfg["shuffle_buffer"]))
    # 50 transformed batches held in memory; from_tensor_slices over the stacked batches yields them one by one.
    stacked = tf.nest.map_structure(lambda *t: tf.stack(t), *list(files_ds.take(50)))
    memory_ds = tf.data.Dataset.from_tensor_slices(stacked).repeat()

    print(f"\nTable 2: the Trainer's input pipeline; batch {batch}; {args.steps} timed steps")
    print("| model | parameters | trainer examples/s | in-memory examples/s | input overhead |")
    print("|---|---|---|---|---|")
    for name in args.models:
        rates = []
        for ds in (files_ds, memory_ds):
            tf.keras.utils.set_random_seed(0)
            model = build_model(name, inputs.features, MODEL_PARAMS[name])
            trainable = MultiTaskModel(model, cfg["loss_weights"])
            trainable.compile(optimizer=optimizers.make(cfg["optimizer"], cfg["learning_rate"]))
            rates.append(_fit_rate(trainable, ds, args.steps, batch))
        print(f"| {name} | {model.count_params():,} | {rates[0]:,.0f} | {rates[1]:,.0f} | "
              f"{1 - rates[0] / rates[1]:.0%} |", flush=True)


if __name__ == "__main__":
    main()
