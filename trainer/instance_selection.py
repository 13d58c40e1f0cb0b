"""Instance-based selective transfer: main-scene examples that look like a small scene's, and help its
target, added to that scene's training data.

Part 2 of the multi-domain transfer source (Alibaba search team, "Transfer learning in multi-task
multi-scene search", technical blog, 2019), published as the minimax game of Wang et al., "A Minimax
Game for Instance based Selective Transfer Learning", KDD 2019. Per target scene t:

- a **selection policy** p_θ(d) over source (main-scene) examples d; an example is kept when
  p_θ(d) > τ (while learning, actions are drawn at random to explore, see below);
- a **discriminator** D(d) = σ(f_φ(d)) tells t's examples (1) from the selected ones (0), trained to
  maximise E_t log D + E_selected log(1 − D);
- the **immediate reward** of a source example, r_i = log(1 + exp(f_φ(d_i))): high for examples the
  discriminator takes for t's;
- the **delayed reward** of a batch, r_b: the drop in t's validation log-loss when the transfer model
  M is updated with the batch's selected examples, discounted over the episode's later batches,
  r'_b = r_b + γ r_{b+1} + γ² r_{b+2} + …. Here the drop is the first-order one for a plain
  gradient step of ``probe_step`` per batch's worth of examples: r_b = η Σ_{i selected} ⟨∇L_val, ∇ℓ_i⟩,
  η = probe_step / batch_size, all shares at once (``_shares``). Each selected
  example is credited with its own share plus the later batches' discounted returns, where the
  source credits every example of a batch with the batch's return. Why: with batch-level credit the
  REINFORCE signal of one example is 1/batch of its batch's and the rest is noise; on the toy tests
  (tests/trainer/test_instance_selection.py) a measured before/after drop with batch-level credit
  rejected a corrupted shard for some seeds and collapsed the policy to selecting nothing for others
  (Adam's momentum in M's own step also mixed earlier batches into a batch's measured drop).
  M then trains (its own optimiser) on the target batch and the selected examples together;
- θ moves by REINFORCE: −Σ_i A_i ∇ log π_θ(a_i | d_i), with A_i = w·a_i·z(r_i) + (1 − w)·a_i·c(r'_i),
  z a standardisation over the episode (the baseline), c the delayed credit in units of its median
  magnitude clipped to [−1, 1] (``_robust``), a_i the action and w = ``immediate_weight``: rewards are
  earned by selecting an example. Two guards against the policy's collapse: while
  learning, actions are drawn from ε + (1 − 2ε)·p_θ(d), so no example is ever certain to be left out
  (a policy that selects nothing earns no reward and would never learn again), and an entropy bonus
  β·H(p_θ(d)) keeps early noise from saturating it.

M is the configured zoo model itself (``trainer.model``), warmed up on t's examples and trained
on t's batches together with the selected examples, so the delayed reward measures what a selected
example adds to what t's own data already gives. d is the example's features (the scene left out: it differs by
construction) and its labels: a source example whose labels disagree with t's is exactly what the
delayed reward should reject, and the policy can only reject what it sees.

Why learn on a sample and then stream: the policy and the discriminator learn on in-memory samples
of the training window (``source_rows`` main-scene and ``target_rows`` target examples); the learned
policy then runs over every training batch (``augment``), appending copies of the kept main-scene
rows with the scene set to t. So selection costs one small MLP forward pass per main-scene row per
epoch, the served model is the configured model with unchanged signatures, and nothing about the
window has to fit in memory.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
import tf_keras as keras

from schemas import scene_of
from trainer.features import InputFeature

DEFAULTS: Dict[str, Any] = {
    "target_scenes": [],              # the small scenes that receive selected main-scene examples
    "source_scene": None,             # null: the most frequent scene (the Transform vocabulary's first)
    "tau": 0.5,                       # keep an example when p_θ(d) > tau
    "gamma": 0.5,                     # discount of later batches' delayed rewards
    "immediate_weight": 0.5,          # w: the reward mix, w·immediate + (1 − w)·delayed
    "policy_hidden_units": [32],
    "discriminator_hidden_units": [32],
    "embedding_dim": 8,               # the policy's and discriminator's own embeddings
    "episodes": 4,                    # passes over the source sample
    "batch_size": 32,                 # source examples per policy step (and target examples per M step)
    "source_rows": 20_000,            # main-scene examples learned on
    "target_rows": 20_000,            # target examples learned on (a share of them validates)
    "validation_percent": 20,
    "warmup_epochs": 1,               # M's epochs on the target's examples before selection starts
    "learning_rate": 0.003,           # the policy's and the discriminator's
    "probe_step": 0.05,               # η·batch_size: the gradient step whose first-order drop is the delayed reward
    "exploration": 0.05,              # ε: actions drawn from Bernoulli(ε + (1 − 2ε)·p_θ(d)) while learning
    "entropy_weight": 0.01,           # β: the policy's entropy bonus
    # learned: the policy above. The two controls an A/B of the policy needs, with nothing learned:
    # all (every source row joins each target: fully-shared transfer) and random (each source row joins
    # a target with probability random_rate, a number or {target scene: number}).
    "policy": "learned",
    "random_rate": None,
}
POLICIES = ("learned", "all", "random")


def settings(config: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """``trainer.instance_selection`` with defaults filled in; None when absent or without targets."""
    raw = config.get("instance_selection")
    if not raw:
        return None
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"trainer.instance_selection has unknown keys {unknown}; known: {sorted(DEFAULTS)}")
    out = dict(DEFAULTS, **raw)
    if not out["target_scenes"]:
        return None
    if isinstance(out["target_scenes"], str):
        out["target_scenes"] = [out["target_scenes"]]
    checks = [("tau", 0.0 <= float(out["tau"]) <= 1.0, "lie in [0, 1]"),
              ("gamma", 0.0 <= float(out["gamma"]) < 1.0, "lie in [0, 1)"),
              ("exploration", 0.0 <= float(out["exploration"]) < 0.5, "lie in [0, 0.5)"),
              ("entropy_weight", float(out["entropy_weight"]) >= 0.0, "be >= 0"),
              ("immediate_weight", 0.0 <= float(out["immediate_weight"]) <= 1.0, "lie in [0, 1]"),
              ("validation_percent", 0 < int(out["validation_percent"]) < 100, "lie in (0, 100)"),
              ("episodes", int(out["episodes"]) >= 1, "be >= 1"),
              ("batch_size", int(out["batch_size"]) >= 1, "be >= 1"),
              ("source_rows", int(out["source_rows"]) >= 1, "be >= 1"),
              ("target_rows", int(out["target_rows"]) >= 2, "be >= 2")]
    for key, ok, rule in checks:
        if not ok:
            raise ValueError(f"trainer.instance_selection.{key} must {rule}, got {out[key]!r}")
    if out["policy"] not in POLICIES:
        raise ValueError(f"trainer.instance_selection.policy must be one of {list(POLICIES)}, got {out['policy']!r}")
    if out["policy"] == "random":
        rates = out["random_rate"]
        rates = rates if isinstance(rates, Mapping) else {t: rates for t in out["target_scenes"]}
        for target in out["target_scenes"]:
            rate = rates.get(target)
            if not isinstance(rate, (int, float)) or not 0.0 <= float(rate) <= 1.0:
                raise ValueError(f"trainer.instance_selection.random_rate must give {target!r} a share in [0, 1] "
                                 f"(policy random), got {rate!r}")
        out["random_rate"] = {t: float(rates[t]) for t in out["target_scenes"]}
    return out


def scene_indices(features: List[InputFeature], chosen: Dict[str, Any]) -> Tuple[str, int, Dict[str, int]]:
    """(the scene feature's name, the source scene's index, {target scene: index}); unknown scenes are
    errors that list the scenes there are."""
    scene = scene_of(features, lambda f: f.feature)
    vocabulary = list(scene.vocabulary)
    named = [chosen["source_scene"]] if chosen["source_scene"] else []
    missing = [s for s in named + list(chosen["target_scenes"]) if s not in vocabulary]
    if missing:
        raise ValueError(f"trainer.instance_selection names scenes {missing} that are not in the training "
                         f"window's scene vocabulary {vocabulary}")
    source = vocabulary.index(chosen["source_scene"]) if chosen["source_scene"] else 0
    targets = {t: vocabulary.index(t) for t in chosen["target_scenes"]}
    if source in targets.values():
        raise ValueError(f"trainer.instance_selection: the source scene {vocabulary[source]!r} cannot be a target")
    return scene.feature.name, source, targets


class SelectorNet(keras.Model):
    """d → logit: its own embeddings of the sparse features, the numeric features and the labels,
    through an MLP. The policy and the discriminator are one each."""

    def __init__(self, features: Sequence[InputFeature], heads: Sequence[str], hidden_units: Sequence[int],
                 embedding_dim: int, skip: str, **kwargs):
        super().__init__(**kwargs)
        self.sparse = [f.feature.name for f in features if f.feature.is_sparse and f.feature.name != skip]
        self.numeric = [f.feature.name for f in features if not f.feature.is_sparse and f.feature.name != skip]
        self.heads = list(heads)
        cards = {f.feature.name: f.cardinality for f in features}
        self.tables = {n: keras.layers.Embedding(cards[n], embedding_dim, name=f"emb_{n}") for n in self.sparse}
        self.hidden = [keras.layers.Dense(int(u), activation="relu") for u in hidden_units]
        self.out = keras.layers.Dense(1)

    def represent(self, inputs) -> tf.Tensor:
        """d as this net sees it: its embeddings, the numeric features and the labels, concatenated."""
        x, y = inputs
        parts = [tf.reshape(self.tables[n](x[n]), [-1, self.tables[n].output_dim]) for n in self.sparse]
        parts += [tf.reshape(tf.cast(x[n], tf.float32), [-1, 1]) for n in self.numeric]
        parts += [tf.reshape(tf.cast(y[h], tf.float32), [-1, 1]) for h in self.heads]
        return tf.concat(parts, axis=1)

    def call(self, inputs):
        h = self.represent(inputs)
        for layer in self.hidden:
            h = layer(h)
        return tf.reshape(self.out(h), [-1])


@dataclasses.dataclass
class Pool:
    """Rows in memory: features and labels as arrays of shape (n, 1)."""
    x: Dict[str, np.ndarray]
    y: Dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.y.values())))

    def take(self, index: np.ndarray, scene: Optional[Tuple[str, int]] = None):
        x = {k: tf.constant(v[index]) for k, v in self.x.items()}
        if scene:
            x[scene[0]] = tf.fill(tf.shape(x[scene[0]]), tf.constant(scene[1], x[scene[0]].dtype))
        return x, {k: tf.constant(v[index]) for k, v in self.y.items()}

    def split(self, percent: int, rng: np.random.Generator) -> Tuple["Pool", "Pool"]:
        held = rng.random(len(self)) < percent / 100.0
        if held.all() or not held.any():
            held[:1], held[1:] = True, False
        part = lambda m: Pool({k: v[m] for k, v in self.x.items()}, {k: v[m] for k, v in self.y.items()})  # noqa: E731
        return part(~held), part(held)


def discounted(rewards: Sequence[float], gamma: float) -> np.ndarray:
    """r'_b = r_b + γ r_{b+1} + γ² r_{b+2} + … within an episode."""
    out, running = np.zeros(len(rewards)), 0.0
    for b in range(len(rewards) - 1, -1, -1):
        running = rewards[b] + gamma * running
        out[b] = running
    return out


def _robust(credit: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Credit in units of its median magnitude over the selected examples, clipped to [-1, 1]: a few
    very harmful examples (flipped labels cost far more than a good example gains) must not drown
    the many small gains, or the policy learns to select nothing."""
    scale = float(np.median(np.abs(credit[selected]))) if selected.any() else 0.0
    return np.clip(credit / scale, -1.0, 1.0) if scale > 1e-12 else np.zeros_like(credit)


def _standardise(v: np.ndarray) -> np.ndarray:
    std = float(np.std(v))
    return (v - np.mean(v)) / std if std > 1e-12 else np.zeros_like(v)


@dataclasses.dataclass
class Learned:
    policy: SelectorNet
    discriminator: SelectorNet
    stats: Dict[str, Any]
    history: List[np.ndarray]  # p_θ(d) over the source sample after each episode


class SelectionLearner:
    """Learns one target scene's policy on in-memory samples (see the module docstring)."""

    def __init__(self, features: Sequence[InputFeature], heads: Sequence[str], scene_feature: str,
                 target_index: int, make_model: Callable[[], keras.Model], chosen: Mapping[str, Any], seed: int):
        self.chosen = dict(chosen)
        self.scene = (scene_feature, int(target_index))
        self.make_model = make_model
        self.rng = np.random.default_rng(seed)
        tf.keras.utils.set_random_seed(seed)
        net = lambda units, name: SelectorNet(features, heads, units, int(chosen["embedding_dim"]),  # noqa: E731
                                              scene_feature, name=name)
        self.policy = net(chosen["policy_hidden_units"], "selection_policy")
        self.discriminator = net(chosen["discriminator_hidden_units"], "selection_discriminator")
        rate = float(chosen["learning_rate"])
        self.policy_opt = keras.optimizers.Adam(rate)
        self.disc_opt = keras.optimizers.Adam(rate)

    @tf.function(reduce_retracing=True)
    def _discriminator_step(self, xt, yt, xs, ys):
        with tf.GradientTape() as tape:
            on_target = self.discriminator((xt, yt))
            on_selected = self.discriminator((xs, ys))
            loss = (tf.reduce_mean(tf.nn.softplus(-on_target)) + tf.reduce_mean(tf.nn.softplus(on_selected)))
        variables = self.discriminator.trainable_variables
        self.disc_opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        # balanced accuracy before the update: D's skill at telling the two apart
        return 0.5 * (tf.reduce_mean(tf.cast(on_target > 0, tf.float32))
                      + tf.reduce_mean(tf.cast(on_selected <= 0, tf.float32)))

    @tf.function(reduce_retracing=True)
    def _shares(self, x, y):
        """Per example i of (x, y): ⟨∇L_val, ∇ℓ_i⟩, the first-order drop of the validation loss per unit
        of a gradient step on ℓ_i alone, for every i at once."""
        model = self.model
        variables = model.model.trainable_variables
        with tf.GradientTape() as tape:
            val = model._combine(tf.stack(model._task_losses(self.val_y, model.model(self.val_x, training=False))))
        grads = tape.gradient(val, variables)
        tangents = [None if g is None else tf.convert_to_tensor(g) for g in grads]
        # J·v by double backward (J = ∂ℓ/∂θ, v = ∇L_val): ∇_u ⟨Jᵀu, v⟩. tf.autodiff.ForwardAccumulator
        # would do it in one pass but fails on embedding lookups inside tf.function.
        u = tf.zeros([tf.shape(next(iter(y.values())))[0]])
        with tf.GradientTape() as outer:
            outer.watch(u)
            with tf.GradientTape() as inner:
                out = model.model(x, training=False)
                per_example = tf.add_n([model.task_weights[i] * model._per_example_loss(h, y, out)
                                        for i, h in enumerate(model.heads)])
                weighted = tf.reduce_sum(u * per_example)
            back = inner.gradient(weighted, variables)
            dot = tf.add_n([tf.reduce_sum(tf.convert_to_tensor(b) * t) for b, t in zip(back, tangents)
                            if b is not None and t is not None])
        return outer.gradient(dot, u)

    @tf.function(reduce_retracing=True)
    def _policy_step(self, x, y, actions, advantage, epsilon, beta):
        with tf.GradientTape() as tape:
            p = tf.sigmoid(self.policy((x, y)))
            behaviour = epsilon + (1.0 - 2.0 * epsilon) * p  # what the actions were drawn from
            log_prob = tf.math.log(tf.where(actions, behaviour, 1.0 - behaviour))
            entropy = -(p * tf.math.log(p + 1e-7) + (1.0 - p) * tf.math.log(1.0 - p + 1e-7))
            loss = -tf.reduce_mean(advantage * log_prob) - beta * tf.reduce_mean(entropy)
        variables = self.policy.trainable_variables
        self.policy_opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def probabilities(self, pool: Pool, batch: int = 8192) -> np.ndarray:
        out = [tf.sigmoid(self.policy(pool.take(np.arange(i, min(i + batch, len(pool)))))).numpy()
               for i in range(0, len(pool), batch)]
        return np.concatenate(out) if out else np.zeros(0)

    def learn(self, source: Pool, target: Pool, progress: Callable[[str], None] = logging.info) -> Learned:
        c = self.chosen
        batch, gamma, w = int(c["batch_size"]), float(c["gamma"]), float(c["immediate_weight"])
        epsilon, beta = float(c["exploration"]), float(c["entropy_weight"])
        train_t, valid_t = target.split(int(c["validation_percent"]), self.rng)
        self.model = model = self.make_model()
        self.val_x, self.val_y = val_x, val_y = valid_t.take(np.arange(len(valid_t)))
        step = float(c["probe_step"])

        def val_loss() -> float:
            return float(np.atleast_1d(model.test_on_batch(val_x, val_y))[0])

        for _ in range(int(c["warmup_epochs"])):
            for idx in np.array_split(self.rng.permutation(len(train_t)), max(1, len(train_t) // batch)):
                model.train_on_batch(*train_t.take(idx))
        stats: Dict[str, Any] = {"source_rows": len(source), "target_rows": len(train_t),
                                 "validation_rows": len(valid_t), "episodes": [],
                                 "validation_loss_before": round(val_loss(), 5)}
        history: List[np.ndarray] = []
        for episode in range(int(c["episodes"])):
            t0 = time.time()
            order = self.rng.permutation(len(source))
            batches = [order[i:i + batch] for i in range(0, len(order), batch)]
            actions, immediate, shares, delayed, accuracy = [], [], [], [], []
            eta = step / batch
            for idx in batches:
                x, y = source.take(idx)
                p = tf.sigmoid(self.policy((x, y))).numpy()
                a = self.rng.random(len(idx)) < epsilon + (1.0 - 2.0 * epsilon) * p
                xt, yt = train_t.take(self.rng.integers(0, len(train_t), batch))
                own = eta * self._shares(*source.take(idx, self.scene)).numpy() * a
                shares.append(own)
                reward = float(own.sum())
                if a.any():
                    xs, ys = source.take(idx[a], self.scene)
                    accuracy.append(float(self._discriminator_step(xt, yt, xs, ys)))
                    xt, yt = ({k: tf.concat([xt[k], xs[k]], 0) for k in xt}, {k: tf.concat([yt[k], ys[k]], 0) for k in yt})
                model.train_on_batch(xt, yt)  # M: the target's batch plus the selected examples
                immediate.append(tf.nn.softplus(self.discriminator((x, y))).numpy())
                actions.append(a)
                delayed.append(reward)
            episode_loss = val_loss()  # M's validation loss after the episode, for the statistics
            # r'_{b+1} per selected example (a batch's return grows with how many it selects; an example's
            # own share does not), centred: what later batches earn is mostly their own doing
            per_example = [r / max(int(a.sum()), 1) for r, a in zip(delayed, actions)]
            later = np.append(discounted(per_example, gamma)[1:], 0.0)
            later = later - later.mean()
            flat, acts = np.concatenate(batches), np.concatenate(actions)
            # Rewards are earned by selecting: a_i·(...). One paid whatever the action would carry no
            # gradient in expectation (E_a ∇ log π(a|d) = 0). The immediate reward is centred (it is
            # never negative); an example's own delayed share is not: one whose step raises the target's
            # validation loss should be dropped even if every example does.
            credit = np.concatenate([own + gamma * r * a for own, r, a in zip(shares, later, actions)]) * acts
            advantage = w * acts * _standardise(np.concatenate(immediate)) + (1 - w) * _robust(credit, acts)
            for start in range(0, len(flat), batch):
                sl = slice(start, start + batch)
                x, y = source.take(flat[sl])
                self._policy_step(x, y, tf.constant(acts[sl]), tf.constant(advantage[sl], tf.float32),
                                  tf.constant(epsilon, tf.float32), tf.constant(beta, tf.float32))
            history.append(self.probabilities(source))
            kept = float(np.mean(history[-1] > float(c["tau"])))
            row = {"episode": episode + 1, "explored_share": round(float(acts.mean()), 4),
                   "kept_share_at_tau": round(kept, 4),
                   "discriminator_accuracy": round(float(np.mean(accuracy)), 4) if accuracy else None,
                   "mean_delayed_reward": float(np.mean(delayed)), "validation_loss": round(episode_loss, 5),
                   "seconds": round(time.time() - t0, 2)}
            stats["episodes"].append(row)
            progress(f"instance selection, scene index {self.scene[1]}: episode {episode + 1}/{c['episodes']} "
                     f"kept {kept:.1%} of {len(source):,} source rows at tau {c['tau']}, discriminator accuracy "
                     f"{row['discriminator_accuracy']}, validation loss {episode_loss:.4f} ({row['seconds']}s)")
        stats["kept_share_at_tau"] = stats["episodes"][-1]["kept_share_at_tau"]
        return Learned(self.policy, self.discriminator, stats, history)


Policy = Union[SelectorNet, float]  # a learned policy, or the share a control keeps at random


def keep_mask(policy: Policy, x, y, scene_feature: str, source: int, tau: float) -> tf.Tensor:
    """Source-scene rows of a batch the policy keeps (p_θ(d) > τ; τ = 1 keeps none), or, for a control,
    each source row with probability ``policy`` (1.0: all of them)."""
    is_source = tf.equal(tf.reshape(tf.cast(x[scene_feature], tf.int64), [-1]), source)
    if isinstance(policy, float):
        return is_source & (tf.random.uniform(tf.shape(is_source)) < policy)
    return is_source & (tf.sigmoid(policy((x, y))) > tau)


def augment(policies: Dict[int, Policy], scene_feature: str, source: int, tau: float):
    """A batch map: each batch plus, for every target scene, copies of its kept source rows with the
    scene set to the target."""
    def fn(x, y):
        xs, ys = [x], [y]
        for target, policy in policies.items():
            mask = keep_mask(policy, x, y, scene_feature, source, tau)
            kx = {k: tf.boolean_mask(v, mask) for k, v in x.items()}
            kx[scene_feature] = tf.fill(tf.shape(kx[scene_feature]), tf.constant(target, kx[scene_feature].dtype))
            xs.append(kx)
            ys.append({k: tf.boolean_mask(v, mask) for k, v in y.items()})
        return ({k: tf.concat([part[k] for part in xs], 0) for k in x},
                {k: tf.concat([part[k] for part in ys], 0) for k in y})
    return fn


def collect(dataset: tf.data.Dataset, scene_feature: str, wanted: Dict[int, int]) -> Dict[int, Pool]:
    """In-memory samples per scene index (up to ``wanted[index]`` rows each), from the first batches
    of ``dataset``; reading stops as soon as every sample is full."""
    got: Dict[int, List[Tuple[dict, dict]]] = {s: [] for s in wanted}
    counts = {s: 0 for s in wanted}
    for x, y in dataset:
        scene = tf.reshape(x[scene_feature], [-1]).numpy()
        for s, cap in wanted.items():
            if counts[s] >= cap:
                continue
            rows = np.flatnonzero(scene == s)[:cap - counts[s]]
            if rows.size:
                got[s].append(({k: v.numpy()[rows] for k, v in x.items()}, {k: v.numpy()[rows] for k, v in y.items()}))
                counts[s] += rows.size
        if all(counts[s] >= cap for s, cap in wanted.items()):
            break
    pools = {}
    for s, parts in got.items():
        if not parts:
            pools[s] = None
            continue
        pools[s] = Pool({k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]},
                        {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]})
    return pools


def count_kept(dataset: tf.data.Dataset, policies: Dict[int, Policy], scene_feature: str, source: int,
               tau: float) -> Tuple[int, Dict[int, int]]:
    """(source-scene rows in one pass of ``dataset``, {target: rows the policy keeps})."""
    targets = list(policies)

    def step(acc, batch):
        x, y = batch
        is_source = tf.equal(tf.reshape(tf.cast(x[scene_feature], tf.int64), [-1]), source)
        kept = [tf.reduce_sum(tf.cast(keep_mask(policies[t], x, y, scene_feature, source, tau), tf.int64))
                for t in targets]
        return acc + tf.stack([tf.reduce_sum(tf.cast(is_source, tf.int64))] + kept)
    total = dataset.reduce(tf.zeros([len(targets) + 1], tf.int64), step).numpy()
    return int(total[0]), {t: int(k) for t, k in zip(targets, total[1:])}


def apply(chosen: Dict[str, Any], features: List[InputFeature], heads: Sequence[str], dataset: tf.data.Dataset,
          make_model: Callable[[], keras.Model], seed: int,
          progress: Callable[[str], None] = logging.info) -> Tuple[tf.data.Dataset, Dict[str, Any]]:
    """Learns a policy per target scene on samples of ``dataset`` (the training batches) and returns the
    dataset with each batch's kept main-scene rows appended as the targets' rows, and the statistics
    for ``train_summary.json``. ``make_model`` builds and compiles M (a ``MultiTaskModel``)."""
    scene_feature, source, targets = scene_indices(features, chosen)
    vocabulary = list(scene_of(features, lambda f: f.feature).vocabulary)
    t0 = time.time()
    summary: Dict[str, Any] = {"source_scene": vocabulary[source], "tau": float(chosen["tau"]),
                               "policy": chosen["policy"], "targets": {}}
    if chosen["policy"] != "learned":
        rates = chosen["random_rate"] if chosen["policy"] == "random" else {t: 1.0 for t in targets}
        return _controlled(dataset, {targets[t]: rates[t] for t in targets}, scene_feature, source, vocabulary,
                           summary, t0, progress)
    wanted = {source: int(chosen["source_rows"]), **{i: int(chosen["target_rows"]) for i in targets.values()}}
    pools = collect(dataset, scene_feature, wanted)
    if pools[source] is None:
        raise ValueError(f"instance selection: the training window has no examples of the source scene "
                         f"{vocabulary[source]!r}")
    policies: Dict[int, Policy] = {}
    for name, index in targets.items():
        pool = pools[index]
        if pool is None or len(pool) < 2:
            raise ValueError(f"instance selection: the training window has {0 if pool is None else len(pool)} "
                             f"examples of target scene {name!r}; it needs some to learn what to select")
        progress(f"instance selection: learning what to add to {name} from {len(pools[source]):,} "
                 f"{vocabulary[source]} and {len(pool):,} {name} examples")
        learner = SelectionLearner(features, heads, scene_feature, index, make_model, chosen, seed)
        learned = learner.learn(pools[source], pool, progress)
        policies[index] = learned.policy
        summary["targets"][name] = learned.stats
    source_rows, kept = count_kept(dataset, policies, scene_feature, source, float(chosen["tau"]))
    for name, index in targets.items():
        summary["targets"][name].update(window_source_rows=source_rows, window_kept_rows=kept[index])
        progress(f"instance selection: {name} gets {kept[index]:,} of the window's {source_rows:,} "
                 f"{vocabulary[source]} examples")
    summary["seconds"] = round(time.time() - t0, 1)
    return dataset.map(augment(policies, scene_feature, source, float(chosen["tau"]))), summary


def _controlled(dataset: tf.data.Dataset, rates: Dict[int, float], scene_feature: str, source: int,
                vocabulary: List[str], summary: Dict[str, Any], t0: float,
                progress: Callable[[str], None]) -> Tuple[tf.data.Dataset, Dict[str, Any]]:
    """The controls: source rows join each target at a fixed rate, nothing learned."""
    source_rows, kept = count_kept(dataset, rates, scene_feature, source, 0.0)
    for index, rate in rates.items():
        name = vocabulary[index]
        summary["targets"][name] = {"random_rate": rate, "episodes": [], "window_source_rows": source_rows,
                                    "window_kept_rows": kept[index]}
        progress(f"instance selection ({summary['policy']}): {name} gets about {rate:.1%} of the window's "
                 f"{source_rows:,} {vocabulary[source]} examples ({kept[index]:,} in one pass)")
    summary["seconds"] = round(time.time() - t0, 1)
    return dataset.map(augment(rates, scene_feature, source, 0.0)), summary
