"""Are two results trees the same run? Every file of run folder A against the same file of run
folder B: byte-identical, or else what differs inside it (JSON fields, npz arrays, safetensors
tensors, table cells). Used for the restructuring's byte-identical check (issue 20: the code at
e95b8ce and the code at HEAD, both in fp32 on one machine) and for reruns across machines.

Files that moved between layouts are paired with --moved OLD=NEW (paths inside the run folder),
npz keys that were renamed with --renamed-key OLD=NEW. Writes nothing; prints one line per file
and a summary. Exit status 0 when every paired file is byte-identical or differs only in timings
(fields whose name says seconds, time or timing).

    python benchmarks/compare_runs.py A B [--moved finetuned/train_metrics.json=train_metrics/finetuned.json]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np

TIMING_WORDS = ("seconds", "second", "timing", "time_", "_time", "wallclock", "per_sample", "samples_per")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, value


def _is_timing(field: str) -> bool:
    return any(word in field.lower() for word in TIMING_WORDS)


def json_differences(a: Path, b: Path) -> list[str]:
    left, right = dict(_flatten(json.loads(a.read_text()))), dict(_flatten(json.loads(b.read_text())))
    return sorted(key for key in left.keys() | right.keys() if left.get(key, "<absent>") != right.get(key, "<absent>"))


def npz_differences(a: Path, b: Path, renamed: dict[str, str]) -> list[str]:
    left = {renamed.get(k, k): v for k, v in np.load(a, allow_pickle=False).items()}
    right = dict(np.load(b, allow_pickle=False).items())
    differing = []
    for key in sorted(left.keys() | right.keys()):
        if key not in left or key not in right:
            differing.append(f"{key} (only in {'B' if key in right else 'A'})")
        elif left[key].dtype.kind in "US" or right[key].dtype.kind in "US":
            # kinds are names: compare them through the same renames as the keys
            if [renamed.get(str(x), str(x)) for x in left[key].ravel()] != [str(x) for x in right[key].ravel()]:
                differing.append(key)
        elif left[key].shape != right[key].shape or not np.array_equal(left[key], right[key], equal_nan=True):
            differing.append(key)
    return differing


def safetensors_differences(a: Path, b: Path) -> list[str]:
    from safetensors.numpy import load_file

    left, right = load_file(a), load_file(b)
    return sorted(k for k in left.keys() | right.keys()
                  if k not in left or k not in right or not np.array_equal(left[k], right[k]))


def table_differences(a: Path, b: Path) -> list[str]:
    import pandas as pd

    read = pd.read_parquet if a.suffix == ".parquet" else pd.read_csv
    left, right = read(a), read(b)
    if list(left.columns) != list(right.columns) or len(left) != len(right):
        return [f"shape/columns {left.shape} vs {right.shape}"]
    return [c for c in left.columns if not left[c].equals(right[c])]


def differences(a: Path, b: Path, renamed: dict[str, str]) -> list[str]:
    suffix = a.suffix
    if suffix == ".json":
        return json_differences(a, b)
    if suffix == ".npz":
        return npz_differences(a, b, renamed)
    if suffix == ".safetensors":
        return safetensors_differences(a, b)
    if suffix in (".csv", ".parquet"):
        return table_differences(a, b)
    return ["bytes"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--moved", action="append", default=[], help="OLD=NEW: a file's path in A and in B")
    parser.add_argument("--renamed-key", action="append", default=[], help="OLD=NEW: an npz key or kind renamed")
    args = parser.parse_args()
    moved = dict(item.split("=", 1) for item in args.moved)
    renamed = dict(item.split("=", 1) for item in args.renamed_key)

    files_a = {p.relative_to(args.a).as_posix() for p in args.a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(args.b).as_posix() for p in args.b.rglob("*") if p.is_file()}
    identical, timing_only, differing, unpaired = [], [], [], []
    for name in sorted(files_a):
        other = moved.get(name, name)
        if other not in files_b:
            unpaired.append(f"only in A: {name}")
            continue
        files_b.discard(other)
        path_a, path_b = args.a / name, args.b / other
        if _digest(path_a) == _digest(path_b):
            identical.append(name)
            continue
        fields = differences(path_a, path_b, renamed)
        label = name if other == name else f"{name} -> {other}"
        if fields and all(_is_timing(field) for field in fields):
            timing_only.append(label)
            print(f"timings only  {label}: {', '.join(fields)}")
        else:
            differing.append(label)
            print(f"DIFFERS       {label}: {', '.join(fields) or 'bytes only (same content)'}")
    unpaired += [f"only in B: {name}" for name in sorted(files_b)]
    for line in unpaired:
        print(line)
    print(f"{len(identical)} byte-identical, {len(timing_only)} differ in timings only, {len(differing)} differ, "
          f"{len(unpaired)} unpaired")
    return 0 if not differing else 1


if __name__ == "__main__":
    sys.exit(main())
