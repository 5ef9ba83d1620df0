"""Reader for the original GLUE TSV layout (the old ``download_glue_data.py`` folders).

Quirks handled here: CoLA train/dev have no header; MRPC's header starts with a UTF-8 BOM;
stray double quotes are text, not quoting (``QUOTE_NONE``); MNLI has matched/mismatched files.
Every problem is reported with the file and line that caused it.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import pandas as pd

from de3pipe.errors import De3Error
from de3pipe.data.tasks import GlueTask, TsvFile

COLUMNS = ("idx", "text_a", "text_b", "label")


def _decode(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise De3Error(f"{path} is empty; restore the original GLUE file")
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise De3Error(f"{path}:{line}: contains a NUL byte; the file is corrupt, restore the original GLUE file")
    try:
        return data.decode("utf-8-sig")  # -sig: MRPC's header starts with a BOM
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise De3Error(
            f"{path}:{line}: not valid UTF-8 ({exc.reason} at byte {exc.start}); GLUE files are UTF-8, "
            "re-download or re-encode the file"
        ) from None


def read_tsv(path: Path, spec: TsvFile, task: GlueTask) -> pd.DataFrame:
    """Read one GLUE TSV into the normalised columns ``idx, text_a, text_b, label`` (-1: unlabeled)."""
    if not path.is_file():
        raise De3Error(
            f"missing GLUE file {path}; expected the original layout <glue_dir>/{task.glue_dir_name}/{spec.name}"
        )
    reader = csv.reader(io.StringIO(_decode(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    try:
        rows = [(reader.line_num, row) for row in reader if row]
    except csv.Error as exc:
        raise De3Error(f"{path}:{reader.line_num}: cannot parse the line ({exc}); the file is corrupt") from None
    if spec.has_header:
        if not rows:
            raise De3Error(f"{path} is empty; restore the original GLUE file")
        _, header = rows.pop(0)
        missing = [c for c in spec.columns.values() if c not in header]
        if missing:
            raise De3Error(f"{path}: header {header} lacks the column(s) {missing}; is this the right task's file?")
        position = {key: header.index(name) for key, name in spec.columns.items()}
        width = len(header)
    else:
        position = dict(spec.columns)
        width = spec.n_columns
    if not rows:
        raise De3Error(f"{path} has a header but no rows; restore the original GLUE file")

    label_index = {raw: i for i, raw in enumerate(task.raw_labels)}
    records = []
    for row_number, (line, row) in enumerate(rows):
        if len(row) != width:
            raise De3Error(
                f"{path}:{line}: {len(row)} tab-separated columns, expected {width}; "
                "the line is malformed (a tab inside a text?), fix or drop it"
            )
        record = {
            "idx": int(row[position["idx"]]) if "idx" in position else row_number,
            "text_a": row[position["text_a"]],
            "text_b": row[position["text_b"]] if "text_b" in position else None,
            "label": -1,
        }
        if "label" in position:
            raw = row[position["label"]].strip()
            if raw not in label_index:
                raise De3Error(
                    f"{path}:{line}: label {raw!r} is not one of {task.name}'s labels {list(task.raw_labels)}"
                )
            record["label"] = label_index[raw]
        records.append(record)
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def fingerprint(glue_dir: Path, task: GlueTask) -> dict[str, str]:
    """sha256 of each file the task reads, keyed by its path inside the GLUE folder."""
    folder = glue_dir / task.glue_dir_name
    return {
        f"{task.glue_dir_name}/{spec.name}": hashlib.sha256((folder / spec.name).read_bytes()).hexdigest()
        for spec, _ in task.splits.values()
    }


def read_task(glue_dir: Path, task: GlueTask) -> dict[str, pd.DataFrame]:
    folder = glue_dir / task.glue_dir_name
    if not glue_dir.is_dir():
        raise De3Error(f"GLUE folder {glue_dir} does not exist; set GLUE_DIR or data.glue_dir to the glue_data folder")
    if not folder.is_dir():
        raise De3Error(f"{glue_dir} has no {task.glue_dir_name}/ folder for task {task.name}")
    return {split: read_tsv(folder / spec.name, spec, task) for split, (spec, _) in task.splits.items()}
