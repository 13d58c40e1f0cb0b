"""UCI Adult into the labelled-samples layout the pipeline's sample input reads (``input.kind: samples``).

    python -m benchmarks.adult_samples --data ../shared/datasets/adult --out work/adult/samples --date 2026-11-20

Writes ``<out>/date=YYYY-MM-DD/adult.parquet`` (or ``adult.csv`` with ``--format csv``): the rows of
``adult.data`` and ``adult.test``, one date (the importer's hash then splits train/eval), with the
two labels of the MMoE paper's census experiments as 0/1 columns: ``income`` (> 50K) and
``never_married`` (marital status Never-married; the marital status itself is a label, not a
feature, so it is not written). Column names lose their dashes (``education_num``), as the
feature spec (``schemas/adult/features.yaml``) and Keras input names need. ``?`` (unknown) stays a
category of its own, as in ``benchmarks/adult.py``. The columns and rules are declared in
``schemas/adult/samples.yaml``.

The files may be the UCI originals (no header; ``adult.test`` opens with a ``|1x3 Cross
validator`` line and ends its labels with a dot) or copies with a header line, as in
``../shared/datasets/adult``. ``tests/data/adult`` holds the first rows of each (UCI, CC BY 4.0).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
from typing import List, Optional

import pandas as pd

COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
           "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
           "classification"]
FILES = ("adult.data", "adult.test")
DEFAULT_DATE = dt.date(2026, 11, 20)


def read_file(path: str) -> pd.DataFrame:
    """One UCI Adult file, with or without its header line."""
    frame = pd.read_csv(path, skipinitialspace=True, comment="|", header=None, names=COLUMNS, dtype=str)
    frame = frame[frame["age"] != "age"].dropna(how="all")   # a header line, where the copy has one
    return frame.reset_index(drop=True)


def to_samples(frame: pd.DataFrame) -> pd.DataFrame:
    """Adult's columns as sample columns: numbers as int64, labels as 0/1, no marital status."""
    out = pd.DataFrame({c.replace("-", "_"): frame[c].str.strip() for c in COLUMNS
                        if c not in ("marital-status", "classification")})
    for c in ("age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"):
        out[c] = pd.to_numeric(out[c]).astype("int64")
    out["income"] = (frame["classification"].str.strip().str.rstrip(".") == ">50K").astype("int64")
    out["never_married"] = (frame["marital-status"].str.strip() == "Never-married").astype("int64")
    return out


def convert(data: str, out: str, date: dt.date = DEFAULT_DATE, fmt: str = "parquet",
            files: List[str] = FILES, rows: Optional[int] = None) -> str:
    """Writes the samples of ``files`` under ``data`` to ``<out>/date=<date>/adult.<fmt>``; returns that path.
    ``rows``: only the first ``rows`` of each file."""
    frames = []
    for name in files:
        path = os.path.join(data, name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: pass --data, the folder holding {' and '.join(files)}")
        frame = read_file(path)
        frames.append(frame.head(rows) if rows else frame)
    samples = to_samples(pd.concat(frames, ignore_index=True))
    day = os.path.join(out, f"date={date:%Y-%m-%d}")
    os.makedirs(day, exist_ok=True)
    target = os.path.join(day, f"adult.{fmt}")
    if fmt == "csv":
        samples.to_csv(target, index=False)
    else:
        samples.to_parquet(target, index=False)
    return target


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                       "shared", "datasets", "adult"),
                        help="folder with adult.data and adult.test (default ../shared/datasets/adult)")
    parser.add_argument("--out", required=True, help="the samples root (input.samples.path), e.g. work/adult/samples")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=DEFAULT_DATE, help="the day the rows land in")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--rows", type=int, default=None, help="only the first N rows of each file")
    args = parser.parse_args(argv)
    target = convert(args.data, args.out, args.date, args.format, rows=args.rows)
    print(f"[adult] wrote {len(pd.read_parquet(target) if args.format == 'parquet' else pd.read_csv(target)):,} "
          f"samples to {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
