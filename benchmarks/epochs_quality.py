"""Does a second epoch still hurt? Eval AUC after every epoch, per optimizer, next to the oracle.

    python -m benchmarks.epochs_quality --impressions 1000000 --epochs 4 --optimizers adam lazy_adam

The day of ``benchmarks.model_quality`` (same ``--workdir``) is trained with the Trainer's own
input pipeline and ``MultiTaskModel`` for ``--epochs`` epochs per optimizer; after each epoch the
eval split is scored exactly (sklearn AUC over every eval impression) for ctr and ctcvr. With Keras'
Adam the id embeddings memorise after the first epoch (README, "Quality against the truth"); lazy
Adam (``trainer/optimizers.py``) updates only the rows a batch looks up. Writes ``epochs_quality.md``.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from typing import Dict, List  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.model_quality import MODEL_PARAMS, oracle, prepare, trainer_config  # noqa: E402

HEADS = ("ctr", "ctcvr")


def epoch_aucs(prep, model_name: str, optimizer: str, epochs: int, seed: int,
               l2_embedding: float = 0.0, scope: str = "table") -> List[Dict[str, float]]:
    import tensorflow as tf
    import tf_keras as keras
    from sklearn.metrics import roc_auc_score

    from trainer import optimizers
    from trainer.balancing import MultiTaskModel
    from trainer.input_fn import training_inputs
    from trainer.layers import penalty
    from trainer.models import build_model, needs_id_counts

    cfg = trainer_config(model_name, seed, epochs)
    keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    inputs = training_inputs(cfg["feature_spec_path"], prep.transform_dir)
    labels = {h: cfg["heads"][h]["label"] for h in cfg["loss_weights"]}
    batch = int(cfg["batch_size"])
    train_ds = inputs.dataset(prep.train_files, labels, batch, shuffle=True, seed=seed,
                              shuffle_buffer=int(cfg["shuffle_buffer"]), cache="memory")
    eval_ds = inputs.dataset(prep.eval_files, {h: cfg["heads"][h]["label"] for h in HEADS}, 8192, shuffle=False,
                             cache="memory")
    params = dict(MODEL_PARAMS[model_name], l2_embedding=l2_embedding, l2_embedding_scope=scope)
    sparse = {f.feature.name: f.cardinality for f in inputs.features if f.feature.is_sparse}
    counts = penalty.count_ids(train_ds, list(sparse), sparse) if needs_id_counts(params) else None
    model = build_model(model_name, inputs.features, params, counts)
    trainable = MultiTaskModel(model, cfg["loss_weights"])
    trainable.compile(optimizer=optimizers.make(optimizer, cfg["learning_rate"]))
    rows = []
    for epoch in range(epochs):
        t0 = time.time()
        trainable.fit(train_ds, epochs=1, verbose=0)
        seconds = time.time() - t0
        pred: Dict[str, list] = {h: [] for h in HEADS}
        truth: Dict[str, list] = {h: [] for h in HEADS}
        for x, y in eval_ds:
            out = model(x, training=False)
            for h in HEADS:
                pred[h].append(out[h].numpy().ravel())
                truth[h].append(y[h].numpy().ravel())
        rows.append(dict({h: float(roc_auc_score(np.concatenate(truth[h]), np.concatenate(pred[h])))
                          for h in HEADS}, seconds=seconds))
        print(f"[epochs] {model_name} {optimizer} l2 {l2_embedding:g} ({scope}) seed {seed} epoch {epoch + 1}: {rows[-1]}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impressions", type=int, default=1_000_000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--model", default="esmm", choices=sorted(MODEL_PARAMS))
    ap.add_argument("--optimizers", nargs="+", default=["adam", "lazy_adam"])
    ap.add_argument("--l2-embedding", nargs="*", type=float, default=[0.0],
                    help="model_params.l2_embedding values (over the whole tables) to try with each optimizer")
    ap.add_argument("--batch-l2", nargs="+", type=float, default=[],
                    help="model_params.l2_embedding values with l2_embedding_scope batch (rows a batch looked up)")
    ap.add_argument("--workdir", default="/tmp/model-quality")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    prep = prepare(args.workdir, 0.6, args.impressions)
    orc = oracle(prep.eval_frame)["overall"]
    penalties = [("table", l2) for l2 in args.l2_embedding] + [("batch", l2) for l2 in args.batch_l2]
    results = {f"{o}, l2_embedding {l2:g}" + (" (batch)" if scope == "batch" else ""):
               [epoch_aucs(prep, args.model, o, args.epochs, s, l2, scope) for s in range(args.seeds)]
               for o in args.optimizers for scope, l2 in penalties}
    flags = " ".join([f"--optimizers {' '.join(args.optimizers)}", f"--l2-embedding {' '.join(map(str, args.l2_embedding))}"]
                     + ([f"--batch-l2 {' '.join(map(str, args.batch_l2))}"] if args.batch_l2 else []))
    lines = [f"# Eval AUC after each epoch (`python -m benchmarks.epochs_quality --impressions {args.impressions} "
             f"--epochs {args.epochs} --seeds {args.seeds} --model {args.model} {flags}`)", "",
             f"machine: {platform.machine()}, {os.cpu_count()} cores; {len(prep.eval_frame):,} eval impressions; "
             f"mean over {args.seeds} seed(s); oracle ctr {orc['ctr']:.4f}, ctcvr {orc['ctcvr']:.4f}", "",
             "| optimizer, regularisation | epoch | ctr AUC | ctcvr AUC | epoch s |", "|---|---|---|---|---|"]
    for o, runs in results.items():
        for e in range(args.epochs):
            cell = {k: np.mean([r[e][k] for r in runs]) for k in (*HEADS, "seconds")}
            lines.append(f"| {o} | {e + 1} | {cell['ctr']:.4f} | {cell['ctcvr']:.4f} | {cell['seconds']:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "epochs_quality.md"), "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
