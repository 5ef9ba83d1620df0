"""A user's own text-classification dataset (config ``datasets.<name>``): read its files (CSV, TSV,
JSONL or Parquet) into the normalised columns ``idx, text_a, text_b, label`` (-1: unlabeled).

Every problem is one line naming the dataset key, the file, the row where there is one (1-based, as
a spreadsheet counts data rows) and the fix; nothing is written before the whole dataset reads.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import math
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
            text = _text(path, where)
            quoting = csv.QUOTE_NONE if kind == "tsv" and _unquoted_tsv(text) else csv.QUOTE_MINIMAL
            frame = pd.read_csv(io.StringIO(text), sep="," if kind == "csv" else "\t", dtype=str, quoting=quoting,
                                keep_default_na=False, na_values=[])
    except De3Error:
        raise
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise De3Error(f"{where}: cannot read {path} as {kind} ({str(exc).splitlines()[0]}); check the file") from None
    if frame.empty:
        raise De3Error(f"{where}: {path} has no rows; it needs at least one example")
    return frame


def _unquoted_tsv(text: str) -> bool:
    """Whether a TSV is plain (every line has the header's fields and none is wrapped in quotes): then a
    quote is text, as in GLUE's files, whose stray quotes a quote-aware reader would run across tabs
    and lines. A TSV written with quoting (a field holding a tab or a newline) is read as CSV is."""
    lines = [line.removesuffix("\r") for line in text.split("\n") if line.strip()]
    fields = lines[0].count("\t")
    return all(line.count("\t") == fields for line in lines) and not any(
        len(cell) > 1 and cell.startswith('"') and cell.endswith('"') for line in lines for cell in line.split("\t"))


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


def label_order(label: str) -> tuple:
    """Sort key of undeclared class names: numbers by value (2 before 10), then text."""
    try:
        number = float(label)
    except ValueError:
        return (1, 0.0, label)
    return (0, number, label) if math.isfinite(number) else (1, 0.0, label)


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


SPLIT_FIELDS = {"train": "train", "test": "test", "submit": "unlabeled"}  # our split -> the config's key


def _hub_tables(task, where: str) -> dict[str, tuple[pd.DataFrame, str]]:
    """The dataset's splits from the Hugging Face hub, as the GLUE hub path reads them."""
    import datasets

    spec = task.dataset
    tables = {}
    for split, key in SPLIT_FIELDS.items():
        name = getattr(spec, key)
        if name is None:
            continue
        try:
            loaded = datasets.load_dataset(spec.hub, spec.hub_config, split=name)
        except Exception as exc:  # noqa: BLE001 - any hub failure gets the same advice
            raise De3Error(f"{where}.{key}: could not load split {name!r} of {spec.hub} from the Hugging Face hub "
                           f"({type(exc).__name__}: {exc}); check the id, config and split, or use local files") from None
        table = loaded.to_pandas()
        feature = loaded.features.get(spec.label)
        if isinstance(feature, datasets.ClassLabel) and spec.label in table:  # the hub's class names, not indices
            table[spec.label] = [feature.names[i] if i >= 0 else None for i in table[spec.label]]
        if table.empty:
            raise De3Error(f"{where}.{key}: split {name!r} of {spec.hub} has no rows")
        tables[split] = (table, f"{spec.hub}[{name}]")
    return tables


def read_dataset(task) -> tuple[dict[str, pd.DataFrame], dict, list[str]]:
    """A user's dataset as normalised splits (``train``; ``test`` and ``submit`` where given, the
    latter unlabeled), where it came from (each file's sha256 and the task definition, never a
    path) and the class names (declared, or the sorted unique train labels)."""
    spec, where = task.dataset, f"datasets.{task.name}"
    if spec.hub:
        tables = _hub_tables(task, where)
        fingerprints = {split: hashlib.sha256(pd.util.hash_pandas_object(t, index=False).to_numpy().tobytes()).hexdigest()
                        for split, (t, _) in tables.items()}
    else:
        paths = {split: Path(getattr(spec, key)) for split, key in SPLIT_FIELDS.items() if getattr(spec, key)}
        tables = {split: (read_table(path, f"{where}.{SPLIT_FIELDS[split]}"), path) for split, path in paths.items()}
        fingerprints = {split: sha256(path) for split, path in paths.items()}
    frames: dict[str, pd.DataFrame] = {}
    raw_labels: dict[str, pd.Series] = {}
    for split, (table, origin) in tables.items():
        at = f"{where}.{SPLIT_FIELDS[split]}"
        frame = pd.DataFrame(texts(table, spec.text_columns, origin, at))
        if split != "submit":
            raw_labels[split] = labels_of(table, spec.label, origin, at)
        frame.insert(0, "idx", range(len(frame)))
        frames[split] = frame
    names = list(spec.labels) if spec.labels else sorted(set(raw_labels["train"]), key=label_order)
    present = sorted(set(raw_labels["train"]))
    if len(present) < 2:
        raise De3Error(f"{where}.train: {tables['train'][1]} holds a single class ({present[0]!r}); a classifier needs "
                       "examples of at least two classes")
    if "test" in raw_labels and not raw_labels["test"].isin(names).any():
        raise De3Error(f"{where}.test: none of {tables['test'][1]}'s labels ({', '.join(sorted(set(raw_labels['test']))[:5])}"
                       f") is among the labels {names}; check the test file's label column ({spec.label!r})")
    for split, labels in raw_labels.items():
        frames[split]["label"] = index_labels(labels, names, tables[split][1], f"{where}.{SPLIT_FIELDS[split]}")
    if "submit" in frames:
        frames["submit"]["label"] = -1
    for frame in frames.values():
        if "text_b" not in frame:
            frame["text_b"] = None
    columns = ["idx", "text_a", "text_b", "label"]
    source = {"kind": "hub" if spec.hub else "files", "sha256": fingerprints,
              "definition": spec.model_dump(exclude={"train", "test", "unlabeled"} if not spec.hub else set())}
    return {split: frame[columns] for split, frame in frames.items()}, source, names
