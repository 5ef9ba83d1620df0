"""Atomic writes: an output is either absent or complete, never half-written.

Everything is first written next to its destination under a temporary name and then
renamed into place, so an interrupted job (SIGKILL, disk full) leaves the previous
complete output, or nothing, behind.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from de3pipe.errors import De3Error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise De3Error(f"{path} already exists; remove it or pass --overwrite to replace it")


def _recover(path: Path) -> None:
    """Tidy what a killed writer of ``path`` left beside it (one writer per output at a time:
    Snakemake's lock). A previous output moved aside for replacement comes back if no new one
    took its place; half-written temporaries go."""
    name = glob.escape(path.name)  # an output's name may hold [ ] * ?: match it literally
    for old in sorted(path.parent.glob(f".{name}.old-*")):
        if not path.exists() and (old / path.name).exists():
            os.replace(old / path.name, path)
        shutil.rmtree(old, ignore_errors=True)
    for tmp in path.parent.glob(f".{name}.tmp-*"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    if path.parent.is_dir():
        _recover(path)
    _check_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs are shared like any other file
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", overwrite: bool = True) -> Iterator[Any]:
    """Open a temporary file beside ``path`` for writing; rename it over ``path`` when closed cleanly."""
    path = Path(path)
    if path.parent.is_dir():
        _recover(path)
    _check_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=False, default=_json_default)
        handle.write("\n")


def read_json(path: str | os.PathLike, what: str = "file") -> dict[str, Any]:
    """A JSON file holding an object, or one clear error naming ``what``."""
    path = Path(path)
    if not path.is_file():
        raise De3Error(f"{what} {path} does not exist")
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise De3Error(f"{what} {path} is not valid JSON, or truncated ({exc}); regenerate it") from None
    if not isinstance(loaded, dict):
        raise De3Error(f"{what} {path} holds a JSON {type(loaded).__name__}, not an object; regenerate it")
    return loaded


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` layout, but byte-for-byte reproducible: numpy stamps each zip entry
    with the current time, which would give identical arrays a new DVC hash on every rerun."""
    with atomic_file(path, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, buffer.getvalue())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def refuse_existing(paths: list[str | os.PathLike], overwrite: bool) -> None:
    """Before any work: one line for the first output that exists and may not be replaced."""
    for path in paths:
        _check_target(Path(path), overwrite)
