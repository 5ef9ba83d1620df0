"""A user's own text-classification dataset (config ``datasets.<name>``): read its files (CSV, TSV,
JSONL or Parquet) into the normalised columns ``idx, text_a, text_b, label`` (-1: unlabeled).

Every problem is one line naming the dataset key, the file, the row where there is one (1-based, as
a spreadsheet counts data rows) and the fix; nothing is written before the whole dataset reads.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
from pathlib import Path

import pandas as pd

from de3pipe.errors import De3Error

FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet",
           ".pq": "parquet"}


def file_format(path: Path, where: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise De3Error(f"{where}: {path} has the unknown extension {suffix or '(none)'!r}; use .csv, .tsv, .jsonl or "
                       ".parquet")
    return FORMATS[suffix]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _text(path: Path, where: str) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise De3Error(f"{where}: {path} line {line} is not UTF-8 (byte 0x{data[exc.start]:02x} at offset "
                       f"{exc.start}); re-save the file as UTF-8") from None


def read_table(path: Path, where: str) -> pd.DataFrame:
    """The file as a table of strings (Parquet keeps its types), or one line saying why not."""
    if not path.is_file():
        raise De3Error(f"{where}: {path} does not exist; fix the path (relative paths start at the project folder)")
    kind = file_format(path, where)
    if path.stat().st_size == 0:
        raise De3Error(f"{where}: {path} is empty; it needs a header and at least one row")
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        elif kind == "jsonl":
            rows = []
            for number, line in enumerate(_text(path, where).splitlines(), start=1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise De3Error(f"{where}: {path} line {number} is not JSON ({exc.msg}); one JSON object per "
                                       "line") from None
                    if not isinstance(row, dict):
                        raise De3Error(f"{where}: {path} line {number} is not a JSON object; one object per line")
                    rows.append(row)
            frame = pd.DataFrame(rows)
        else:
            frame = pd.read_csv(io.StringIO(_text(path, where)), sep="," if kind == "csv" else "\t", dtype=str,
                                keep_default_na=False, na_values=[])
    except De3Error:
        raise
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise De3Error(f"{where}: cannot read {path} as {kind} ({str(exc).splitlines()[0]}); check the file") from None
    if frame.empty:
        raise De3Error(f"{where}: {path} has no rows; it needs at least one example")
    return frame


def column(frame: pd.DataFrame, name: str, path: Path, where: str) -> pd.Series:
    if name not in frame.columns:
        close = difflib.get_close_matches(name, [str(c) for c in frame.columns], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise De3Error(f"{where}: {path} has no column {name!r}; {hint}(columns: {', '.join(map(str, frame.columns))})")
    return frame[name]


def texts(frame: pd.DataFrame, columns: list[str], path: Path, where: str) -> dict[str, pd.Series]:
    """The text columns as ``text_a`` (and ``text_b``), every cell a non-empty string."""
    out = {}
    for key, name in zip(("text_a", "text_b"), columns, strict=False):
        values = column(frame, name, path, where)
        empty = values.isna() | (values.astype(str).str.strip() == "")
        if empty.any():
            row = int(empty.to_numpy().argmax()) + 1
            raise De3Error(f"{where}: {path} row {row}: the text column {name!r} is empty; fill or remove the row "
                           f"({int(empty.sum())} such rows)")
        out[key] = values.astype(str)
    return out


def labels_of(frame: pd.DataFrame, name: str, path: Path, where: str) -> pd.Series:
    values = column(frame, name, path, where)
    missing = values.isna() | (values.astype(str).str.strip() == "")
    if missing.any():
        row = int(missing.to_numpy().argmax()) + 1
        raise De3Error(f"{where}: {path} row {row}: the label column {name!r} is empty; label the row or move it to "
                       "the unlabeled file")
    return values.map(_label_text)


def _label_text(value) -> str:
    """Labels compare as text: 1, 1.0 and "1" are one class."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def index_labels(labels: pd.Series, names: list[str], path: Path, where: str) -> pd.Series:
    """Class indices in the order of ``names``; one line for a label outside them."""
    position = {label: i for i, label in enumerate(names)}
    unknown = ~labels.isin(list(position))
    if unknown.any():
        row = int(unknown.to_numpy().argmax()) + 1
        raise De3Error(f"{where}: {path} row {row}: label {labels.iloc[row - 1]!r} is not one of the labels "
                       f"{names}; add it to the dataset's labels or fix the row")
    return labels.map(position).astype("int64")
