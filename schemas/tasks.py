"""The task funnel: which behaviours the model predicts, in which order, and the heads that follows.

Config (``tasks:`` in configs/pipeline.yaml), one entry per behaviour, parents first::

    tasks:
      - {name: ctr, label: click}                                # P(click | impression)
      - {name: cvr, label: conversion, after: ctr, entire_space_head: ctcvr}

- ``label``: the example column the task is learned from (a funnel log's label, or a column of a
  labelled sample). Labels are nested: the log join only labels an event whose parent event
  happened (an event without one is an ``orphan``), and the sample input quarantines a row whose
  child label is 1 where the parent's is 0.
- ``after``: the task this behaviour depends on (omitted: the impression, the funnel's root).
- ``type``: ``binary`` (default: a probability) or ``regression`` (e.g. dwell seconds: MSE loss,
  metrics MSE and a calibration ratio). A regression task cannot be a parent.
- ``eval_weight``: the column the task's own head is evaluated weighted by; default: the parent's
  label (a conditional rate is measured where its condition holds, as the ESMM paper measures CVR).
- ``entire_space_head``: the name of the entire-space head (default ``<name>_es``).

Heads, all returned by the serving signature in one call:

- ``<name>``: the *conditional* head, P(task | parent happened, x); for a root task that is
  P(task | impression, x), which is also its entire-space probability, so a root has one head.
  Trained, when ``trainer.loss_weights`` names it, on the rows where the parent happened (each
  row's loss times the parent's label: the log-likelihood factor of the Bayesian chain, averaged
  over all impressions), and evaluated weighted by ``eval_weight``.
- ``<name>_es`` (or ``entire_space_head``): P(task and all its ancestors | impression, x), the
  product of conditional heads along the chain (p(cart) = p(click) x p(cart | click)), over the
  entire impression space (ESMM). It never exceeds its parent's entire-space head.

The default funnel is click -> conversion with heads ``ctr``, ``cvr`` and ``ctcvr``.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

TYPES = ("binary", "regression")
TASK_KEYS = ("name", "label", "after", "type", "eval_weight", "entire_space_head")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class TaskConfigError(ValueError):
    """A ``tasks:`` section that does not describe a funnel; the message names the task."""


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    label: str
    after: Optional[str] = None
    type: str = "binary"
    eval_weight: Optional[str] = None
    entire_space_head: Optional[str] = None

    @property
    def binary(self) -> bool:
        return self.type == "binary"

    def as_config(self) -> Dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and not (k == "type" and v == "binary")}


@dataclasses.dataclass(frozen=True)
class Head:
    """One served output. ``given``: the parent's label, which a conditional head's training loss
    is weighted by (None: every impression counts). ``eval_weight``: the column its evaluation is
    weighted by. ``parent``: for an entire-space head, the entire-space head it may never exceed."""
    name: str
    task: str
    label: str
    type: str
    entire_space: bool
    given: Optional[str] = None
    eval_weight: Optional[str] = None
    parent: Optional[str] = None

    def as_config(self) -> Dict[str, Any]:
        out = {"label": self.label, "task": self.task, "type": self.type, "entire_space": self.entire_space}
        for key in ("given", "eval_weight", "parent"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


class Funnel:
    """The ordered tasks and the heads derived from them (see the module docstring)."""

    def __init__(self, tasks: Sequence[Task]):
        self.tasks: List[Task] = list(tasks)
        self._by_name = {t.name: t for t in self.tasks}
        self.heads: Dict[str, Head] = {}
        for t in self.tasks:
            parent = self._by_name[t.after] if t.after else None
            given = parent.label if parent else None
            self.heads[t.name] = Head(t.name, t.name, t.label, t.type, entire_space=parent is None, given=given,
                                      eval_weight=t.eval_weight or given)
            if parent is not None and t.binary:
                es = self.entire_space_head(t.name)
                self.heads[es] = Head(es, t.name, t.label, t.type, entire_space=True,
                                      parent=self.entire_space_head(parent.name))

    @property
    def task_names(self) -> List[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str) -> Task:
        return self._by_name[name]

    def parent(self, name: str) -> Optional[Task]:
        after = self._by_name[name].after
        return self._by_name[after] if after else None

    def entire_space_head(self, task: str) -> str:
        """The head holding P(task and its ancestors | impression): the task's own head for a root."""
        t = self._by_name[task]
        if t.after is None:
            return t.name
        return t.entire_space_head or f"{t.name}_es"

    def labels(self) -> List[str]:
        return list(dict.fromkeys(t.label for t in self.tasks))

    def head_config(self) -> Dict[str, Dict[str, Any]]:
        """``{head: {label, task, type, entire_space, given?, eval_weight?, parent?}}``: what the Evaluator,
        the gate, the serving check and the Trainer read."""
        return {name: h.as_config() for name, h in self.heads.items()}

    def as_config(self) -> List[Dict[str, Any]]:
        return [t.as_config() for t in self.tasks]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Funnel) and self.tasks == other.tasks

    def __repr__(self) -> str:
        return f"Funnel({self.as_config()})"


def _task(entry: Any, position: int) -> Task:
    if not isinstance(entry, Mapping):
        raise TaskConfigError(f"tasks[{position}] must be a mapping with at least name and label, got {entry!r}")
    name = entry.get("name")
    where = f"task {name!r}" if name else f"tasks[{position}]"
    unknown = sorted(set(entry) - set(TASK_KEYS))
    if unknown:
        raise TaskConfigError(f"{where} has unknown keys {unknown}; known: {list(TASK_KEYS)}")
    for key in ("name", "label"):
        if not isinstance(entry.get(key), str) or not _NAME.match(entry[key]):
            raise TaskConfigError(f"{where} needs a {key} (letters, digits, _), got {entry.get(key)!r}")
    kind = entry.get("type", "binary")
    if kind not in TYPES:
        raise TaskConfigError(f"{where} has type {kind!r}; types: {list(TYPES)}")
    for key in ("after", "eval_weight", "entire_space_head"):
        value = entry.get(key)
        if value is not None and (not isinstance(value, str) or not _NAME.match(value)):
            raise TaskConfigError(f"{where}: {key} must be a name (letters, digits, _), got {value!r}")
    if kind == "regression" and entry.get("entire_space_head"):
        raise TaskConfigError(f"{where} is a regression task: it has no entire-space head (entire_space_head)")
    if entry.get("entire_space_head") and entry.get("after") is None:
        raise TaskConfigError(f"{where} follows the impression: its own head is already its entire-space "
                              "probability (entire_space_head is for a task with `after`)")
    if entry["name"] == "default":
        raise TaskConfigError("a task may not be named 'default': per-head settings use that key for "
                              "the heads they do not name")
    return Task(name=entry["name"], label=entry["label"], after=entry.get("after"), type=kind,
                eval_weight=entry.get("eval_weight"), entire_space_head=entry.get("entire_space_head"))


def _check_chain(tasks: List[Task]) -> None:
    by_name: Dict[str, Task] = {}
    for t in tasks:
        if t.name in by_name:
            raise TaskConfigError(f"task {t.name!r} is declared twice")
        by_name[t.name] = t
    for t in tasks:
        if t.after is not None and t.after not in by_name:
            raise TaskConfigError(f"task {t.name!r} comes after {t.after!r}, which is not a declared task "
                                  f"(declared: {list(by_name)}; omit `after` for a task that follows the impression)")
    for t in tasks:  # a cycle: following `after` from t comes back to t
        seen = [t.name]
        node = t
        while node.after is not None:
            node = by_name[node.after]
            if node.name in seen:
                cycle = " -> ".join(seen[seen.index(node.name):] + [node.name])
                raise TaskConfigError(f"task {t.name!r} is in a cycle of `after`: {cycle}")
            seen.append(node.name)
    position = {t.name: i for i, t in enumerate(tasks)}
    for t in tasks:
        if t.after is not None:
            parent = by_name[t.after]
            if not parent.binary:
                raise TaskConfigError(f"task {t.name!r} comes after {parent.name!r}, a regression task; only a "
                                      "binary behaviour can be a step of the funnel")
            if position[parent.name] > position[t.name]:
                raise TaskConfigError(f"task {t.name!r} is declared before its parent {parent.name!r}; list the "
                                      "tasks in funnel order")
    names: Dict[str, str] = {}
    for t in tasks:
        es = (t.entire_space_head or f"{t.name}_es") if t.after is not None and t.binary else None
        for head in filter(None, (t.name, es)):
            if head in names:
                raise TaskConfigError(f"head {head!r} (of task {t.name!r}) clashes with a head of task "
                                      f"{names[head]!r}; rename one (entire_space_head)")
            names[head] = t.name


def parse_tasks(section: Any) -> Funnel:
    """The ``tasks:`` section as a Funnel, or a TaskConfigError naming what is wrong."""
    if isinstance(section, Funnel):
        return section
    if not isinstance(section, (list, tuple)) or not section:
        raise TaskConfigError(f"tasks must be a non-empty list of tasks (name, label, after, ...), got {section!r}")
    tasks = [_task(entry, i) for i, entry in enumerate(section)]
    _check_chain(tasks)
    return Funnel(tasks)


DEFAULT_TASKS: List[Dict[str, Any]] = [
    {"name": "ctr", "label": "click"},
    {"name": "cvr", "label": "conversion", "after": "ctr", "entire_space_head": "ctcvr"},
]
DEFAULT_FUNNEL = parse_tasks(DEFAULT_TASKS)


def funnel_of(tasks: Union[None, Funnel, Iterable[Mapping[str, Any]]]) -> Funnel:
    """What a model builder or the Trainer accepts: a Funnel, the config list, or None (the default)."""
    return DEFAULT_FUNNEL if tasks is None else parse_tasks(list(tasks) if not isinstance(tasks, Funnel) else tasks)


def check_head_names(what: str, names: Iterable[str], funnel: Funnel) -> None:
    """``what`` (e.g. ``trainer.loss_weights``) may only name heads of the funnel."""
    unknown = sorted(set(names) - set(funnel.heads))
    if unknown:
        raise TaskConfigError(f"{what} names {unknown}, which are not heads of the declared tasks; "
                              f"heads: {list(funnel.heads)}")
