"""TFX Trainer entry point (``run_fn='trainer.run.run_fn'``) and the serving export.

The exported SavedModel's ``serving_default`` takes raw serialized tf.Examples
(what logs and serving requests contain), applies the Transform graph and
returns every head of the task funnel in one call (default {ctr, cvr, ctcvr}; schemas/tasks.py).
"""
from __future__ import annotations

import os


import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any, Dict, List  # noqa: E402

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from schemas import FEATURE_SPEC_PATH  # noqa: E402
from schemas.tasks import check_head_names, funnel_of  # noqa: E402
from trainer import distribution, instance_selection, optimizers  # noqa: E402
from trainer.input_fn import CACHES, TrainingInputs, training_inputs  # noqa: E402
from trainer.layers import penalty  # noqa: E402
from trainer.balancing import loss_labels  # noqa: E402
from trainer.models import build_model, needs_id_counts  # noqa: E402
from trainer.models.bayes_chain import check_factor_weights  # noqa: E402
from trainer.models.transfer import attention_summary  # noqa: E402
from trainer.training_model import training_model  # noqa: E402



RAW_SIGNATURE = "serving_raw"


def _serving_fns(model: keras.Model, tft_layer, raw_spec) -> Dict[str, Any]:
    """Two signatures over one graph: ``serving_default`` parses serialized tf.Examples (what
    the logs hold, and TF Serving's b64 instances); ``serving_raw`` takes one tensor per raw
    feature, so a REST client can send instances of plain feature values and TF Serving (or
    the local model server) needs no feature list of its own."""
    model.tft_layer = tft_layer  # keep a reference: tables must be tracked
    input_names = list(model.input.keys()) if isinstance(model.input, dict) else model.input_names

    def predict(raw):
        transformed = model.tft_layer(raw)
        outputs = model({k: transformed[k] for k in input_names}, training=False)
        return {head: tf.identity(v, name=head) for head, v in outputs.items()}

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def serve(serialized):
        return predict(tf.io.parse_example(serialized, raw_spec))

    raw_signature = {name: tf.TensorSpec(shape=[None], dtype=f.dtype, name=name)
                     for name, f in sorted(raw_spec.items())}

    @tf.function(input_signature=[raw_signature])
    def serve_raw(features):
        return predict({k: tf.reshape(v, [-1] + list(raw_spec[k].shape)) for k, v in features.items()})

    return {"serving_default": serve, RAW_SIGNATURE: serve_raw}


def export_serving_model(model: keras.Model, inputs: TrainingInputs, path: str) -> None:
    model.save(path, save_format="tf", signatures=_serving_fns(model, inputs.tft_layer, inputs.raw_inputs))


def early_stopping_settings(config: Dict[str, Any]) -> Dict[str, int]:
    """``trainer.early_stopping``: holdout_percent (0 = off: every epoch runs, validation on the eval split)
    and patience (epochs without a lower holdout loss before stopping; the best epoch's weights are kept)."""
    settings = dict(config.get("early_stopping") or {})
    unknown = sorted(set(settings) - {"holdout_percent", "patience"})
    if unknown:
        raise ValueError(f"trainer.early_stopping has unknown keys {unknown}; known: ['holdout_percent', 'patience']")
    holdout, patience = int(settings.get("holdout_percent", 0)), int(settings.get("patience", 1))
    if not 0 <= holdout < 50:
        raise ValueError(f"trainer.early_stopping.holdout_percent must be in [0, 50), got {holdout}")
    if patience < 0:
        raise ValueError(f"trainer.early_stopping.patience must be >= 0, got {patience}")
    return {"holdout_percent": holdout, "patience": patience}


def input_cache_setting(config: Dict[str, Any], epochs: int) -> str:
    """``trainer.input_cache``: where the transformed training window (and the holdout or eval
    split scored after every epoch) is kept after the first epoch, so later epochs skip reading,
    parsing and transforming: ``memory`` (default), ``disk`` (a local temporary directory, removed
    after training, for windows larger than memory) or ``none``. A one-epoch run never caches."""
    cache = str(config.get("input_cache", "memory"))
    if cache not in CACHES:
        raise ValueError(f"trainer.input_cache must be one of {list(CACHES)}, got {cache!r}")
    return cache if epochs > 1 else "none"


def _subdir(cached: Dict[str, str], name: str) -> Dict[str, str]:
    """One cache directory per dataset: tf.data's file cache locks its files while it writes them."""
    if not cached["cache_dir"]:
        return cached
    path = os.path.join(cached["cache_dir"], name)
    os.makedirs(path, exist_ok=True)
    return dict(cached, cache_dir=path)


class _Progress(keras.callbacks.Callback):
    def __init__(self, every: int = 100):
        super().__init__()
        self.every = every
        self.t0 = time.time()

    def on_train_batch_end(self, batch, logs=None):
        if batch and batch % self.every == 0:
            loss = (logs or {}).get("loss", float("nan"))
            logging.info("trainer: step %d loss %.4f (%.1fs)", batch, loss, time.time() - self.t0)


def _selection_model(config: Dict[str, Any], inputs: TrainingInputs, params: Dict[str, Any]) -> keras.Model:
    """The transfer model M that instance selection's delayed reward is measured on: the configured
    model, without the id-frequency penalty (its counts are of the augmented window, not known yet)."""
    plain = {k: v for k, v in params.items() if k not in ("l2_embedding", "l2_embedding_scope")}
    model = training_model(build_model(config["model"], inputs.features, plain, tasks=config.get("tasks")),
                           inputs.features, config)
    model.compile(optimizer=optimizers.make(config.get("optimizer", "lazy_adam"), config["learning_rate"]))
    return model


def train(train_files: List[str], eval_files: List[str], transform_output: str, serving_model_dir: str,
          config: Dict[str, Any]) -> Dict[str, Any]:
    tf.keras.utils.set_random_seed(int(config["seed"]))
    strategy, dist = distribution.choose(config)
    inputs = training_inputs(config.get("feature_spec_path") or FEATURE_SPEC_PATH, transform_output)
    funnel = funnel_of(config.get("tasks"))
    heads: Dict[str, Dict[str, Any]] = config.get("heads") or funnel.head_config()
    config = dict(config, heads=heads)
    loss_weights: Dict[str, float] = config["loss_weights"]
    check_head_names("trainer.loss_weights", loss_weights, funnel)
    if config["model"] == "bayes_chain":
        check_factor_weights(funnel, loss_weights)
    head_labels = loss_labels(heads, loss_weights)
    batch = int(config["batch_size"])
    logging.info("trainer: %d train file patterns (one per span in the window): %s", len(train_files), train_files)
    stopping = early_stopping_settings(config)
    holdout = stopping["holdout_percent"]
    epochs = int(config["epochs"])
    cache = input_cache_setting(config, epochs)
    cache_dir = tempfile.mkdtemp(prefix="input-cache-") if cache == "disk" else ""
    cached = dict(cache=cache, cache_dir=cache_dir)
    train_ds = inputs.dataset(train_files, head_labels, batch, shuffle=True, seed=int(config["seed"]),
                              shuffle_buffer=int(config["shuffle_buffer"]), holdout_percent=holdout,
                              **_subdir(cached, "train"))
    eval_ds = inputs.dataset(eval_files, head_labels, batch, shuffle=False)
    # With early stopping, each epoch is scored on the held-out share of the training window; the eval
    # split stays unseen by every training decision (it is what the Evaluator gates on).
    val_ds = (inputs.dataset(train_files, head_labels, batch, shuffle=False, holdout_percent=holdout, holdout=True,
                             **_subdir(cached, "holdout"))
              if holdout else inputs.dataset(eval_files, head_labels, batch, shuffle=False, **_subdir(cached, "eval")))
    params = dict(config.get("model_params") or {})
    selection = instance_selection.settings(config)
    if selection:
        train_ds, selection = instance_selection.apply(
            selection, inputs.features, list(loss_weights), train_ds,
            lambda: _selection_model(config, inputs, params), int(config["seed"]))
    if dist["replicas"] > 1:
        options = distribution.distribute_options(dist["shard_policy"])
        train_ds, eval_ds, val_ds = (d.with_options(options) for d in (train_ds, eval_ds, val_ds))

    id_counts = None
    if needs_id_counts(params):
        # One pass over the training rows before training (it fills the input cache when there is one).
        sparse = {f.feature.name: f.cardinality for f in inputs.features if f.feature.is_sparse}
        id_counts = penalty.count_ids(train_ds, list(sparse), sparse)
        logging.info("trainer: counted the ids of %d features over %d training rows for the batch embedding penalty",
                     len(sparse), int(next(iter(id_counts.values())).sum()) if id_counts else 0)
    with strategy.scope():
        model = build_model(config["model"], inputs.features, params, id_counts, tasks=funnel)
        trainable = training_model(model, inputs.features, config)
        trainable.compile(optimizer=optimizers.make(config.get("optimizer", "lazy_adam"), config["learning_rate"]),
                          metrics={h: [keras.metrics.MeanSquaredError(name=f"{h}_mse")
                                       if heads[h]["type"] == "regression" else keras.metrics.AUC(name=f"{h}_auc")]
                                   for h in loss_weights})
    t0 = time.time()
    callbacks: List[keras.callbacks.Callback] = [_Progress()]
    if holdout:
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=stopping["patience"],
                                             restore_best_weights=True, verbose=1)
        callbacks.append(stop)
    try:
        history = trainable.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=2, callbacks=callbacks)
    finally:
        if cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)
    elapsed = time.time() - t0
    target = distribution.write_dir(serving_model_dir, dist["chief"])
    export_serving_model(model, inputs, target)
    distribution.discard(target, serving_model_dir)
    summary = {"train_seconds": round(elapsed, 2), "distribution": dist, "input_cache": cache,
               "history": {k: [float(x) for x in v] for k, v in history.history.items()}}
    if selection:
        summary["instance_selection"] = selection
    if id_counts:
        summary["id_counts"] = {f: {"rows": int(c.sum()), "distinct_ids": int((c > 0).sum()), "table_rows": len(c)}
                                for f, c in id_counts.items()}
    if holdout:
        losses = summary["history"]["val_loss"]
        summary["early_stopping"] = dict(stopping, epochs_run=len(losses),
                                         best_epoch=int(min(range(len(losses)), key=losses.__getitem__)) + 1,
                                         holdout_loss=losses)
    attention = attention_summary(model, eval_ds, inputs.features)
    if attention:
        summary["attention_by_scene"] = attention
    logging.info("trainer: %s", json.dumps(summary))
    return summary


def run_fn(fn_args) -> None:
    """TFX Trainer hook. The trainer section of the pipeline config arrives as custom_config."""
    config = dict(fn_args.custom_config or {})
    summary = train(fn_args.train_files, fn_args.eval_files, fn_args.transform_output,
                    fn_args.serving_model_dir, config)
    write_summary(fn_args.model_run_dir, summary)


def write_summary(directory: str, summary: Dict[str, Any]) -> None:
    """``train_summary.json`` in ``directory``, by the chief only (every worker has the same summary)."""
    if summary["distribution"]["chief"]:
        with tf.io.gfile.GFile(os.path.join(directory, "train_summary.json"), "w") as fh:
            fh.write(json.dumps(summary, indent=2))
