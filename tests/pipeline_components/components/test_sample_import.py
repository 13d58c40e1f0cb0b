"""The SampleImportExampleGen executor on small Parquet and CSV days: validation, accounting, labels, splits.

No orchestrator and no training: the executor runs directly, as join_helpers runs the log join.
"""
import datetime as dt
import glob
import json
import os
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
import yaml
from tfx.types import artifact_utils, standard_artifacts

from configs import REPO_ROOT, load_config
from pipeline_components.components import join_logic, log_join, sample_import, sample_rows
from schemas.samples import SampleSchemaError, load_sample_schema
from tests.pipeline_components.components.test_logs_behind_uri import LOCAL_ONLY

DAY = dt.date(2026, 11, 20)
TASKS = [{"name": "ctr", "label": "click"}, {"name": "cvr", "label": "conversion", "after": "ctr"}]
SCHEMA = {"fields": {
    "sample_id": {"type": "string", "required": True},
    "user": {"type": "string", "required": True},
    "price": {"type": "double", "required": True, "min": 0.0},
    "age": {"type": "int64", "min": 0, "max": 120},                     # optional
    "device": {"type": "string", "required": True, "allowed": ["ios", "android"]},
    "click": {"type": "int64", "required": True},
    "conversion": {"type": "int64", "required": True},
}}


def _schema(tmp_path, body=None, name="samples.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body or SCHEMA))
    return str(path)


def _good(n, seed=0, start=0):
    rng = np.random.default_rng(seed)
    click = (rng.random(n) < 0.3).astype(np.int64)
    return pd.DataFrame({
        "sample_id": [f"s{start + i:05d}" for i in range(n)],
        "user": [f"u{i % 37}" for i in range(n)],
        "price": rng.uniform(1, 100, n).round(2),
        "age": rng.integers(18, 80, n).astype(np.int64),
        "device": np.where(rng.random(n) < 0.5, "ios", "android"),
        "click": click,
        "conversion": (click * (rng.random(n) < 0.4)).astype(np.int64),
    })


# Each bad row breaks exactly one rule; the reason it must be quarantined with.
BAD = [
    ({"price": -1.0}, "price below 0.0"),
    ({"age": 130}, "age above 120"),
    ({"device": "tv"}, "unknown device (allowed: ios, android)"),
    ({"user": None}, "missing required field 'user'"),
    ({"price": float("nan")}, "price is NaN"),
    ({"price": float("inf")}, "price is infinite"),
    ({"click": 2, "conversion": 0}, "label 'click' of task 'ctr' is not 0 or 1"),
    ({"click": 0, "conversion": 1}, "label 'conversion' of task 'cvr' is set where its parent task 'ctr' ('click') is 0: "
                                    "labels must be nested (task cvr comes after ctr)"),
]


def _bad_rows():
    rows = _good(len(BAD), seed=9, start=90000)
    rows["age"] = rows["age"].astype(object)
    rows["user"] = rows["user"].astype(object)
    for i, (change, _) in enumerate(BAD):
        for k, v in change.items():
            rows.at[i, k] = v
    return rows


def _write_parquet(root, frame, name="part-0.parquet", day=DAY):
    folder = os.path.join(root, f"date={day:%Y-%m-%d}")
    os.makedirs(folder, exist_ok=True)
    types = {"sample_id": pa.string(), "user": pa.string(), "price": pa.float64(), "age": pa.int64(),
             "device": pa.string(), "click": pa.int64(), "conversion": pa.int64()}
    # From lists, not pandas: a NaN stays a NaN (pandas' conversion would make it a null).
    table = pa.table({c: pa.array(frame[c].tolist(), type=t) for c, t in types.items()})
    pq.write_table(table, os.path.join(folder, name), row_group_size=300)


def run_import(root, out, schema_path, fmt="parquet", tasks=TASKS, id_column=None, run_date=DAY.isoformat(),
               max_quarantine=0.5, evidence_root=None, default_scene="all"):
    examples = standard_artifacts.Examples()
    examples.uri = str(out / "examples")
    report = log_join.JoinReport()
    report.uri = str(out / "report")
    os.makedirs(report.uri, exist_ok=True)
    props = {"samples_root": str(root), "run_date": run_date, "format": fmt, "sample_schema_path": schema_path,
             "tasks": json.dumps(tasks), "scene_column": "scene", "default_scene": default_scene,
             "id_column": id_column, "eval_percent": 20, "max_quarantine_fraction": max_quarantine,
             "evidence_root": evidence_root}
    sample_import.Executor().Do({}, {"examples": [examples], "join_report": [report]}, props)
    with open(os.path.join(report.uri, "join_report.json")) as fh:
        return examples, json.load(fh), report


def read_examples(uri):
    rows = []
    for folder in sorted(glob.glob(os.path.join(uri, "Split-*"))):
        split = os.path.basename(folder)[len("Split-"):]
        for path in sorted(glob.glob(os.path.join(folder, "*.gz"))):
            for rec in tf.data.TFRecordDataset(path, compression_type="GZIP"):
                row = {"split": split}
                for k, f in tf.train.Example.FromString(rec.numpy()).features.feature.items():
                    kind = f.WhichOneof("kind")
                    values = list(getattr(f, kind).value)
                    row[k] = (values[0].decode() if kind == "bytes_list" else values[0]) if values else None
                rows.append(row)
    return pd.DataFrame(rows)


def quarantined(report_uri):
    out = []
    for path in glob.glob(os.path.join(report_uri, "quarantine", "*.jsonl")):
        with open(path) as fh:
            out += [json.loads(line) for line in fh if line.strip()]
    return out


@pytest.fixture(scope="module")
def parquet_day(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parquet_day")
    root = tmp / "samples"
    good = _good(900)
    _write_parquet(root, good)
    _write_parquet(root, _bad_rows(), name="part-1.parquet")
    examples, report, artifact = run_import(root, tmp / "out", _schema(tmp))
    return {"good": good, "examples": examples, "report": report, "rows": read_examples(examples.uri),
            "quarantine": quarantined(artifact.uri)}


def test_every_row_is_an_example_or_quarantined_with_its_reason(parquet_day):
    acc = parquet_day["report"]["accounting"]["samples"]
    assert acc == {"input": 900 + len(BAD), "examples": 900, "quarantined": len(BAD), "accounted": 900 + len(BAD)}
    assert parquet_day["report"]["quarantine_reasons"] == {f"samples: {reason}": 1 for _, reason in BAD}
    records = parquet_day["quarantine"]
    assert sorted(r["reason"] for r in records) == sorted(reason for _, reason in BAD)
    for r in records:   # the evidence: the row as it was read, where it came from
        assert r["file"].endswith("part-1.parquet") and r["values"]["sample_id"].startswith("s9")
    rows = parquet_day["rows"]
    assert len(rows) == 900 and set(rows["sample_id"]) == set(parquet_day["good"]["sample_id"])


def test_examples_carry_the_columns_labels_and_the_default_scene(parquet_day):
    rows = parquet_day["rows"].set_index("sample_id").sort_index()
    good = parquet_day["good"].set_index("sample_id").sort_index()
    assert set(rows["scene"]) == {"all"}
    for column in ("user", "device", "click", "conversion", "age"):
        assert (rows[column] == good[column]).all(), column
    assert np.allclose(rows["price"], good["price"], atol=1e-4)
    report = parquet_day["report"]
    assert report["examples"]["scene=all"] == 900
    assert report["examples"]["positives.click"] == int(good["click"].sum())
    assert report["examples"]["positives.conversion"] == int(good["conversion"].sum())


def test_output_is_a_standard_examples_artifact_split_by_a_stable_hash(parquet_day):
    examples, report, rows = parquet_day["examples"], parquet_day["report"], parquet_day["rows"]
    assert examples.span == (DAY - dt.date(1970, 1, 1)).days == report["span"]
    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "eval"]
    assert examples.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
    assert report["examples"]["train"] + report["examples"]["eval"] == len(rows)
    assert 0.14 < (rows["split"] == "eval").mean() < 0.26


def test_split_hashes_the_id_column_when_declared(tmp_path):
    root = tmp_path / "samples"
    good = _good(400)
    _write_parquet(root, good)
    _, report, artifact = run_import(root, tmp_path / "out", _schema(tmp_path), id_column="sample_id")
    rows = read_examples(str(tmp_path / "out" / "examples"))
    want = np.where(join_logic.eval_mask(join_logic.id_hashes(rows["sample_id"].tolist()), 20), "eval", "train")
    assert (rows["split"].to_numpy() == want).all()
    assert report["input"]["id_column"] == "sample_id"


def _csv(root, text, name="part-0.csv", day=DAY):
    folder = os.path.join(root, f"date={day:%Y-%m-%d}")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w") as fh:
        fh.write(text)


def test_csv_with_a_declared_schema_quarantines_bad_values_and_lines_not_the_file(tmp_path):
    good = _good(200)
    text = good.to_csv(index=False)
    lines = text.splitlines()
    extra = ["s80000,u1,abc,30,ios,0,0",          # a price that is not a number
             "s80001,u1,5.0,thirty,ios,0,0",      # an age that is not an integer
             "s80002,u1,5.0,30,ios,0",            # a field short
             "s80003,,5.0,30,ios,0,0",            # empty required field
             "s80004,u1,5.0,,ios,0,0"]            # empty optional field: a good row
    _csv(tmp_path / "samples", "\n".join(lines + extra) + "\n")
    _, report, artifact = run_import(tmp_path / "samples", tmp_path / "out", _schema(tmp_path), fmt="csv")
    assert report["accounting"]["samples"] == {"input": 205, "examples": 201, "quarantined": 4, "accounted": 205}
    assert report["quarantine_reasons"] == {
        "samples: column 'price' has a value that is not double": 1,
        "samples: column 'age' has a value that is not int64": 1,
        "samples: malformed CSV line: 6 fields, expected 7": 1,
        "samples: missing required field 'user'": 1}
    [line] = [q for q in quarantined(artifact.uri) if "malformed" in q["reason"]]
    assert line["line"] == 204 and line["values"] == {"text": "s80002,u1,5.0,30,ios,0"}
    # Every record's row is its data row in the file (line - 2), also after the skipped line.
    at = {q["values"].get("sample_id", q["values"].get("text", "")[:6]): q["row"] for q in quarantined(artifact.uri)}
    assert at == {"s80000": 200, "s80001": 201, "s80002": 202, "s80003": 203}
    rows = read_examples(str(tmp_path / "out" / "examples")).set_index("sample_id")
    assert rows.loc["s80004", "age"] is None or pd.isna(rows.loc["s80004", "age"])
    assert rows.loc["s00003", "price"] == pytest.approx(good.loc[3, "price"], abs=1e-4)


def test_the_content_hash_split_is_the_same_for_csv_and_parquet_and_any_column_order(tmp_path):
    good = _good(300)
    _write_parquet(tmp_path / "pq", good)
    _csv(tmp_path / "csv", good[list(reversed(good.columns))].to_csv(index=False))
    schema = _schema(tmp_path)
    run_import(tmp_path / "pq", tmp_path / "out_pq", schema)
    run_import(tmp_path / "csv", tmp_path / "out_csv", schema, fmt="csv")
    a = read_examples(str(tmp_path / "out_pq" / "examples")).set_index("sample_id").sort_index()
    b = read_examples(str(tmp_path / "out_csv" / "examples")).set_index("sample_id").sort_index()
    assert (a["split"] == b["split"]).all()
    assert set(a["split"]) == {"train", "eval"}


def test_over_the_quarantine_limit_fails_with_reasons_and_keeps_the_evidence(tmp_path):
    root = tmp_path / "samples"
    _write_parquet(root, _good(100))
    _write_parquet(root, _bad_rows(), name="part-1.parquet")
    evidence = tmp_path / "evidence"
    with pytest.raises(log_join.QuarantineThresholdError) as err:
        run_import(root, tmp_path / "out", _schema(tmp_path), max_quarantine=0.01, evidence_root=str(evidence))
    msg = str(err.value)
    n = len(BAD)
    assert msg.startswith(f"sample import for {DAY} failed: {n} of {100 + n} rows quarantined "
                          f"({n / (100 + n):.2%}), over log_join.max_quarantine_fraction = 1.00%")
    assert "samples: unknown device (allowed: ios, android): 1" in msg
    kept = evidence / DAY.isoformat() / "attempt-1"
    assert str(kept / "quarantine") in msg
    assert json.load(open(kept / "join_report.json"))["accounting"]["samples"]["quarantined"] == n
    assert len(quarantined(str(kept))) == n


def test_an_unreadable_file_is_counted_and_fails_the_day(tmp_path):
    root = tmp_path / "samples"
    _write_parquet(root, _good(50))
    with open(os.path.join(root, f"date={DAY}", "broken.parquet"), "wb") as fh:
        fh.write(b"not parquet at all")
    with pytest.raises(log_join.QuarantineThresholdError, match=r"1 unreadable file\(s\) in the partition"):
        run_import(root, tmp_path / "out", _schema(tmp_path))
    report = json.load(open(tmp_path / "out" / "report" / "join_report.json"))
    assert report["unreadable_files"] == 1 and report["accounting"]["samples"]["examples"] == 50


def test_a_missing_day_fails_naming_path_and_date(tmp_path):
    root = tmp_path / "samples"
    _write_parquet(root, _good(10))
    with pytest.raises(sample_rows.MissingSamplesError) as err:
        run_import(root, tmp_path / "out", _schema(tmp_path), run_date="2026-12-24")
    assert "2026-12-24" in str(err.value) and os.path.join(str(root), "date=2026-12-24") in str(err.value)
    assert not glob.glob(str(tmp_path / "out" / "examples" / "*" / "*.gz"))
    # The day is there, in the other format: the error says what was found.
    with pytest.raises(sample_rows.MissingSamplesError, match=r"no \*\.csv samples for 2026-11-20 .*part-0\.parquet"):
        run_import(root, tmp_path / "out2", _schema(tmp_path), fmt="csv")


def test_settings_that_do_not_fit_fail_before_any_row_is_read(tmp_path):
    schema = load_sample_schema(_schema(tmp_path))
    with pytest.raises(sample_rows.SampleSettingsError, match="task 'buy' learns from column 'purchase', which"):
        sample_rows.make_settings(schema, TASKS + [{"name": "buy", "label": "purchase", "after": "cvr"}],
                                  "scene", "all", None)
    with pytest.raises(sample_rows.SampleSettingsError, match="id_column 'nope' is not a column"):
        sample_rows.make_settings(schema, TASKS, "scene", "all", "nope")
    with pytest.raises(sample_rows.SampleSettingsError, match="id_column 'age' must be required"):
        sample_rows.make_settings(schema, TASKS, "scene", "all", "age")
    with pytest.raises(sample_rows.SampleSettingsError, match="label 'user' must be an int64"):
        sample_rows.make_settings(schema, [{"name": "x", "label": "user"}], "scene", "all", None)
    with pytest.raises(sample_rows.SampleSettingsError, match="task 'years' learns from column 'age': declare it "
                                                              "required"):
        sample_rows.make_settings(schema, [{"name": "years", "label": "age", "type": "regression"}], "scene", "all",
                                  None)
    with_scene = dict(SCHEMA, scene_column="domain", scenes=["a", "b"],
                      fields=dict(SCHEMA["fields"], domain={"type": "string"}))
    scened = load_sample_schema(_schema(tmp_path, with_scene, "scened.yaml"))
    assert scened.fields["domain"]["allowed"] == ["a", "b"] and scened.scene_list("all") == ["a", "b"]
    with pytest.raises(sample_rows.SampleSettingsError, match="scene feature reads 'scene': make them the same"):
        sample_rows.make_settings(scened, TASKS, "scene", "all", None)


@pytest.mark.parametrize("body, message", [
    ({"fields": {"a": {"type": "text"}}}, "field 'a' has type 'text'"),
    ({"fields": {"a": {"type": "int64", "allowed": ["x"]}}}, r"field 'a' is int64 but allows \['x'\]"),
    ({"fields": {"a": {"type": "string", "max": 3}}}, "max needs a number and a numeric type"),
    ({"fields": {"a": {"type": "string", "unique": True}}}, r"unknown attributes \['unique'\]"),
    ({"fields": {"a": {"type": "string"}}, "scene_column": "b", "scenes": ["x"]}, "scene_column 'b' is not a declared"),
    ({"fields": {"a": {"type": "string"}}, "scene_column": "a"}, "needs the `scenes` list"),
    ({"fields": {"a": {"type": "string"}}, "scenes": ["x"]}, "`scenes` without a scene_column"),
])
def test_a_bad_sample_schema_is_a_readable_error(tmp_path, body, message):
    with pytest.raises(SampleSchemaError, match=message):
        load_sample_schema(_schema(tmp_path, body))


def test_a_bad_input_kind_is_a_clear_config_error(tmp_path):
    with pytest.raises(ValueError, match=r"input.kind must be `logs` .* or `samples` .*, got 'tables'"):
        load_config(home=str(tmp_path), overrides={"input": {"kind": "tables"}}).input
    with pytest.raises(ValueError, match="input.samples.schema is not set"):
        load_config(home=str(tmp_path), overrides={"input": {"kind": "samples"}}).input
    assert load_config(home=str(tmp_path)).input["kind"] == "logs"


def test_samples_mode_builds_the_import_and_takes_its_scene_list_from_the_sample_schema(tmp_path):
    from pipeline_components.pipeline import create_components, pipeline_scenes, span_delay_days
    config = load_config(os.path.join(REPO_ROOT, "configs", "adult.yaml"), str(tmp_path))
    components = create_components(config, DAY.isoformat())
    first = components[0]
    assert isinstance(first, sample_import.SampleImportExampleGen)
    props = first.exec_properties
    assert props["samples_root"] == str(tmp_path / "samples") and props["default_scene"] == "all"
    assert json.loads(props["tasks"]) == [{"label": "income", "name": "income"},
                                          {"label": "never_married", "name": "marital"}]
    assert pipeline_scenes(config) == ["all"] and span_delay_days(config) == 0
    gate = next(c for c in components if c.id == "DeploymentGate")
    assert json.loads(gate.exec_properties["scenes"]) == ["all"]
    logs = load_config(home=str(tmp_path))
    assert create_components(logs, DAY.isoformat(), until="LogJoinExampleGen")[0].id == "LogJoinExampleGen"


def test_sample_modules_touch_no_file_through_local_only_calls():
    """The sample import runs in Beam stages (on Dataflow or Flink, too): files go through FileSystems
    or tf.io.gfile, as the log join's modules (test_logs_behind_uri.py holds the rule)."""
    found = []
    for name in ("sample_import.py", "sample_rows.py"):
        with open(os.path.join(REPO_ROOT, "pipeline_components", "components", name)) as fh:
            for number, line in enumerate(fh, 1):
                code = line.split("#", 1)[0]
                if LOCAL_ONLY.search(code) and not code.strip().startswith(("\"", "'")):
                    found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_adult_converter_writes_labels_and_no_marital_status(tmp_path):
    from benchmarks import adult_samples
    data = os.path.join(REPO_ROOT, "tests", "data", "adult")
    path = adult_samples.convert(data, str(tmp_path / "samples"))
    assert path == str(tmp_path / "samples" / f"date={adult_samples.DEFAULT_DATE}" / "adult.parquet")
    frame = pd.read_parquet(path)
    assert len(frame) == 4000
    assert "marital_status" not in frame and "classification" not in frame
    assert set(frame["income"]) == {0, 1} and set(frame["never_married"]) == {0, 1}
    assert 0.15 < frame["income"].mean() < 0.35 and 0.25 < frame["never_married"].mean() < 0.4
    # The UCI originals: no header, adult.test opens with a `|1x3 Cross validator` line and ends labels with a dot.
    original = tmp_path / "original"
    original.mkdir()
    with open(os.path.join(data, "adult.test")) as fh:
        body = fh.read().splitlines()[1:4]
    (original / "adult.test").write_text("|1x3 Cross validator\n" + "\n".join(body) + "\n")
    raw = adult_samples.read_file(str(original / "adult.test"))
    assert len(raw) == 3 and re.match(r"^\d+$", raw.loc[0, "age"])
    assert list(adult_samples.to_samples(raw)["income"]) == list(adult_samples.to_samples(
        adult_samples.read_file(os.path.join(data, "adult.test")).head(3))["income"])


def test_a_declared_scene_column_is_validated_and_lists_the_scenes(tmp_path):
    from schemas.samples import run_scenes
    body = dict(SCHEMA, scene_column="scene", scenes=["app", "web"],
                fields=dict(SCHEMA["fields"], scene={"type": "string"}))
    schema_path = _schema(tmp_path, body)
    frame = _good(60).assign(scene=["app", "web", "moon"] * 20)
    folder = tmp_path / "samples" / f"date={DAY}"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), str(folder / "part-0.parquet"))
    _, report, _ = run_import(tmp_path / "samples", tmp_path / "out", schema_path, default_scene="ignored")
    assert report["quarantine_reasons"] == {"samples: unknown scene (allowed: app, web)": 20}
    assert report["examples"]["scene=app"] == report["examples"]["scene=web"] == 20
    assert "scene=ignored" not in report["examples"] and report["input"]["default_scene"] is None
    section = {"kind": "samples", "samples": {"schema": schema_path, "default_scene": "ignored"}}
    assert run_scenes(section, "unused") == ["app", "web"]
    adult = load_config(os.path.join(REPO_ROOT, "configs", "adult.yaml"), str(tmp_path))
    assert run_scenes(adult.input, adult.raw_events_path) == ["all"]
    logs = load_config(home=str(tmp_path))
    assert run_scenes(logs.input, logs.raw_events_path) == ["main_search", "shop_search", "partner_app", "promo_feed"]
