"""The labelled-sample contract: a declared schema for one row per impression with its label columns.

A sample schema (for example ``schemas/adult/samples.yaml``) is written in the style of
``raw_events.yaml``: every column with its type (``string``, ``int64``, ``double``) and the rules a
row must meet (``required``, ``min``, ``max``, ``allowed``). The sample input
(``pipeline_components/components/sample_import.py``) validates every row against it and
quarantines the rows that break it.

Scenes: ``scene_column`` names the column holding each row's scene, and ``scenes`` lists the scenes
(the gate's scene list; the column's allowed values). With no scene column every row belongs to one
scene, the config's ``input.samples.default_scene``, and the importer writes that name into the
feature spec's scene column of every example.

Layout on disk: ``<samples root>/date=YYYY-MM-DD/*.parquet`` (or ``*.csv`` with a header row), one
partition per day; the day is the examples' span.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os
from typing import Any, Dict, List, Optional

import yaml

TYPES = ("string", "int64", "double")
FIELD_KEYS = ("type", "required", "min", "max", "allowed")
FORMATS = ("parquet", "csv")


class SampleSchemaError(ValueError):
    """A sample schema that cannot be applied; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class SampleSchema:
    path: str
    fields: Dict[str, Dict[str, Any]]
    scene_column: Optional[str] = None
    scenes: Optional[List[str]] = None

    def scene_list(self, default_scene: str) -> List[str]:
        """The scenes the gate and the report list: the declared ones, or the one default scene."""
        return list(self.scenes) if self.scene_column else [default_scene]


def sample_partition_dir(samples_root: str, date: dt.date) -> str:
    return os.path.join(samples_root, f"date={date:%Y-%m-%d}")


def _check_field(path: str, name: str, attrs: Any, scenes: Optional[List[str]]) -> Dict[str, Any]:
    if not isinstance(attrs, dict):
        raise SampleSchemaError(f"{path}: field '{name}' must be a mapping (type, required, min, max, allowed)")
    attrs = dict(attrs)
    unknown = sorted(set(attrs) - set(FIELD_KEYS))
    if unknown:
        raise SampleSchemaError(f"{path}: field '{name}' has unknown attributes {unknown}; known: {list(FIELD_KEYS)}")
    if attrs.get("type") not in TYPES:
        raise SampleSchemaError(f"{path}: field '{name}' has type {attrs.get('type')!r}; types: {list(TYPES)}")
    if attrs.get("allowed") == "scenes":
        if not scenes:
            raise SampleSchemaError(f"{path}: field '{name}' allows `scenes`, but the schema declares no scenes list")
        attrs["allowed"] = list(scenes)
    if "allowed" in attrs:
        allowed = attrs["allowed"]
        if not isinstance(allowed, list) or not allowed:
            raise SampleSchemaError(f"{path}: field '{name}': allowed must be a non-empty list, got {allowed!r}")
        want = {"string": str, "int64": int, "double": (int, float)}[attrs["type"]]
        bad = [v for v in allowed if not isinstance(v, want) or isinstance(v, bool)]
        if bad:
            raise SampleSchemaError(f"{path}: field '{name}' is {attrs['type']} but allows {bad}")
    for bound in ("min", "max"):
        if bound in attrs and (attrs["type"] == "string" or not isinstance(attrs[bound], (int, float))):
            raise SampleSchemaError(f"{path}: field '{name}': {bound} needs a number and a numeric type")
    return attrs


@functools.lru_cache(maxsize=8)
def load_sample_schema(path: str) -> SampleSchema:
    if not os.path.exists(path):
        raise SampleSchemaError(f"sample schema {path} not found (input.samples.schema in the config)")
    with open(path) as fh:
        raw = yaml.safe_load(fh) or {}
    unknown = sorted(set(raw) - {"fields", "scene_column", "scenes"})
    if unknown:
        raise SampleSchemaError(f"{path}: unknown keys {unknown}; known: fields, scene_column, scenes")
    scenes = raw.get("scenes")
    if scenes is not None and (not isinstance(scenes, list) or not all(isinstance(s, str) for s in scenes) or not scenes):
        raise SampleSchemaError(f"{path}: scenes must be a non-empty list of names, got {scenes!r}")
    fields_raw = raw.get("fields")
    if not isinstance(fields_raw, dict) or not fields_raw:
        raise SampleSchemaError(f"{path}: `fields` must map each column to its type and rules")
    fields = {name: _check_field(path, name, attrs, scenes) for name, attrs in fields_raw.items()}
    scene_column = raw.get("scene_column")
    if scene_column is not None:
        if scene_column not in fields:
            raise SampleSchemaError(f"{path}: scene_column {scene_column!r} is not a declared field")
        if not scenes:
            raise SampleSchemaError(f"{path}: scene_column {scene_column!r} needs the `scenes` list (the gate's scenes)")
        field = fields[scene_column]
        if field["type"] != "string":
            raise SampleSchemaError(f"{path}: scene_column {scene_column!r} must be a string field")
        field["required"] = True
        field.setdefault("allowed", list(scenes))
        if sorted(field["allowed"]) != sorted(scenes):
            raise SampleSchemaError(f"{path}: scene_column {scene_column!r} allows {field['allowed']}, "
                                    f"but the schema's scenes are {scenes}")
    elif scenes is not None:
        raise SampleSchemaError(f"{path}: `scenes` without a scene_column: name the column that holds each "
                                "row's scene, or drop `scenes` (every row is then in input.samples.default_scene)")
    return SampleSchema(path=path, fields=fields, scene_column=scene_column,
                        scenes=list(scenes) if scenes else None)


def run_scenes(input_section: Dict[str, Any], raw_events_path: str) -> List[str]:
    """The scenes a run reports on, from the config's ``input`` section (``PipelineConfig.input``): in
    samples mode the sample schema's (its one ``default_scene`` when it declares no scene column), else
    the raw event schema's. The pipeline's gate and the run report both list these."""
    if input_section.get("kind") == "samples":
        samples = input_section["samples"]
        return load_sample_schema(samples["schema"]).scene_list(str(samples["default_scene"]))
    from schemas import scenes
    return scenes(raw_events_path)
