"""Atomic writes (de3pipe/infra/io.py): an output is replaced completely or not at all, existing
outputs are refused without overwrite, JSON files fail with one clear line, and .npz files are
byte-for-byte reproducible."""

import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from de3pipe.errors import De3Error
from de3pipe.infra.io import atomic_dir, atomic_file, read_json, refuse_existing, write_json, write_npz


class Interrupted(Exception):
    """Raised inside a block to simulate a job failing half-way through writing."""


def leftovers(folder: Path, name: str) -> list[str]:
    """The temporaries and moved-aside copies a writer of ``name`` could leave in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


# ---- atomic_dir ----

def test_atomic_dir_creates_the_folder_only_on_success(tmp_path):
    out = tmp_path / "deep" / "out"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("A")
        assert tmp.parent == out.parent and tmp != out
        assert not out.exists()  # nothing at the destination while the block runs
    assert (out / "a.txt").read_text() == "A"
    assert leftovers(out.parent, "out") == []


def test_atomic_dir_replaces_the_whole_folder_with_overwrite(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "old.txt").write_text("old")
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]  # replaced, not merged
    assert leftovers(tmp_path, "out") == []


def test_atomic_dir_failure_keeps_the_previous_output_and_no_temporaries(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "result.txt").write_text("complete")
    with pytest.raises(Interrupted), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "result.txt").write_text("half")
        raise Interrupted
    assert sorted(p.name for p in out.iterdir()) == ["result.txt"]
    assert (out / "result.txt").read_text() == "complete"
    assert leftovers(tmp_path, "out") == []


def test_atomic_dir_failure_on_a_fresh_path_leaves_nothing(tmp_path):
    with pytest.raises(Interrupted), atomic_dir(tmp_path / "out") as tmp:
        (tmp / "x").write_text("x")
        raise Interrupted
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_refuses_an_existing_output_without_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    with pytest.raises(De3Error) as exc, atomic_dir(out):
        pytest.fail("the block must not run")
    message = one_line(exc)
    assert str(out) in message and "already exists" in message and "--overwrite" in message
    assert (out / "keep.txt").read_text() == "keep"
    assert leftovers(tmp_path, "out") == []


def test_atomic_dir_folder_follows_the_umask_not_mkdtemps_0700(tmp_path):
    previous = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "f").write_text("f")
    finally:
        os.umask(previous)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


def test_a_killed_replacement_is_recovered_before_the_next_write(tmp_path):
    """A writer killed between moving the old output aside and renaming the new one in: the next
    writer brings the old output back (and refuses to replace it without overwrite)."""
    out = tmp_path / "out"
    aside = tmp_path / ".out.old-abc123"
    (aside / "out").mkdir(parents=True)
    (aside / "out" / "result.txt").write_text("previous")
    half = tmp_path / ".out.tmp-xyz789"
    half.mkdir()
    (half / "result.txt").write_text("half")
    with pytest.raises(De3Error, match="already exists"), atomic_dir(out):
        pass
    assert (out / "result.txt").read_text() == "previous"
    assert leftovers(tmp_path, "out") == []


# ---- atomic_file ----

def test_atomic_file_writes_text_and_bytes(tmp_path):
    with atomic_file(tmp_path / "a" / "t.txt") as handle:
        handle.write("héllo\n")
    assert (tmp_path / "a" / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    with atomic_file(tmp_path / "b.bin", "wb") as handle:
        handle.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert leftovers(tmp_path / "a", "t.txt") == [] and leftovers(tmp_path, "b.bin") == []


def test_atomic_file_failure_keeps_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("complete")
    with pytest.raises(Interrupted), atomic_file(path) as handle:
        handle.write("half")
        handle.flush()
        raise Interrupted
    assert path.read_text() == "complete"
    assert leftovers(tmp_path, "f.txt") == []


def test_atomic_file_failure_on_a_fresh_path_leaves_nothing(tmp_path):
    with pytest.raises(Interrupted), atomic_file(tmp_path / "f.txt") as handle:
        handle.write("half")
        raise Interrupted
    assert list(tmp_path.iterdir()) == []


def test_atomic_file_overwrites_by_default_and_refuses_when_asked(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("one")
    with atomic_file(path) as handle:
        handle.write("two")
    assert path.read_text() == "two"
    with pytest.raises(De3Error) as exc, atomic_file(path, overwrite=False) as handle:
        handle.write("three")
    assert "already exists" in one_line(exc)
    assert path.read_text() == "two"


def test_atomic_file_removes_a_stale_temporary(tmp_path):
    stale = tmp_path / ".f.txt.tmp-dead"
    stale.write_text("from a killed job")
    with atomic_file(tmp_path / "f.txt") as handle:
        handle.write("x")
    assert not stale.exists()


# ---- refuse_existing ----

def test_refuse_existing_names_the_first_existing_output(tmp_path):
    absent, first, second = tmp_path / "absent", tmp_path / "first", tmp_path / "second"
    first.write_text("1")
    second.mkdir()
    refuse_existing([absent], overwrite=False)  # nothing exists: no error
    refuse_existing([absent, first, second], overwrite=True)
    with pytest.raises(De3Error) as exc:
        refuse_existing([absent, first, second], overwrite=False)
    message = one_line(exc)
    assert str(first) in message and str(second) not in message
    with pytest.raises(De3Error, match="second already exists"):
        refuse_existing([absent, str(second)], overwrite=False)  # str paths too


# ---- JSON ----

def test_write_json_serialises_numpy_and_paths_and_reads_back(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"f": np.float32(0.5), "i": np.int64(3), "a": np.arange(3), "p": Path("x/y"), "n": None})
    assert read_json(path) == {"f": 0.5, "i": 3, "a": [0, 1, 2], "p": "x/y", "n": None}
    assert path.read_text().endswith("}\n")
    with pytest.raises(TypeError, match="cannot serialise set"):
        write_json(tmp_path / "bad.json", {"s": {1}})
    assert not (tmp_path / "bad.json").exists()


def test_read_json_missing_file(tmp_path):
    with pytest.raises(De3Error) as exc:
        read_json(tmp_path / "none.json", what="thresholds file")
    assert one_line(exc) == f"thresholds file {tmp_path / 'none.json'} does not exist"


@pytest.mark.parametrize("content", [b'{"a": 1', b"", b"not json", b'{"a": "\xff\xfe"}'])
def test_read_json_invalid_or_truncated(tmp_path, content):
    path = tmp_path / "m.json"
    path.write_bytes(content)
    with pytest.raises(De3Error) as exc:
        read_json(path, what="evaluation metrics")
    message = one_line(exc)
    assert message.startswith(f"evaluation metrics {path} is not valid JSON, or truncated")
    assert message.endswith("regenerate it")


@pytest.mark.parametrize(("value", "kind"), [([1, 2], "list"), ("text", "str"), (3, "int"), (None, "NoneType")])
def test_read_json_refuses_a_non_object(tmp_path, value, kind):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(value))
    with pytest.raises(De3Error) as exc:
        read_json(path)
    assert one_line(exc) == f"file {path} holds a JSON {kind}, not an object; regenerate it"


# ---- npz ----

ARRAYS = {
    "ints": np.arange(12, dtype=np.int16).reshape(3, 4),
    "floats": np.linspace(0, 1, 7),
    "names": np.array(["de3", "entropy"]),
    "scalar": np.array(6),
}


def test_write_npz_is_byte_for_byte_reproducible_at_any_time(tmp_path, monkeypatch):
    write_npz(tmp_path / "a.npz", **ARRAYS)
    later = time.time() + 3 * 86400  # zip entries stamped with the clock would differ three days later
    monkeypatch.setattr(time, "time", lambda: later)
    write_npz(tmp_path / "b.npz", **ARRAYS)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_write_npz_is_what_np_load_reads(tmp_path):
    path = tmp_path / "a.npz"
    write_npz(path, **ARRAYS)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(ARRAYS)
        for name, array in ARRAYS.items():
            assert data[name].dtype == array.dtype and np.array_equal(data[name], array)
    with zipfile.ZipFile(path) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}
        assert sorted(i.filename for i in archive.infolist()) == sorted(f"{n}.npy" for n in ARRAYS)
    assert leftovers(tmp_path, "a.npz") == []


def test_write_npz_failure_keeps_the_previous_file(tmp_path):
    path = tmp_path / "a.npz"
    write_npz(path, **ARRAYS)
    before = path.read_bytes()
    with pytest.raises(ValueError):  # object arrays would need pickle
        write_npz(path, good=np.arange(3), bad=np.array([{"a": 1}], dtype=object))
    assert path.read_bytes() == before
    assert leftovers(tmp_path, "a.npz") == []


# ---- a known bug ----

def test_recovery_of_names_with_glob_metacharacters(tmp_path):
    # a writer of "out[1]" killed between its two renames: the previous output waits beside it
    aside = tmp_path / ".out[1].old-abc123"
    (aside / "out[1]").mkdir(parents=True)
    (aside / "out[1]" / "result.txt").write_text("previous")
    # another output's writer, in flight: "a1.txt"'s temporary matches the pattern ".a[1].txt.tmp-*"
    in_flight = tmp_path / ".a1.txt.tmp-live"
    in_flight.write_text("another job's half-written output")
    with atomic_file(tmp_path / "a[1].txt") as handle:
        handle.write("x")
    assert in_flight.exists(), "a writer of a[1].txt deleted the temporary of a1.txt"
    with pytest.raises(De3Error, match="already exists"), atomic_dir(tmp_path / "out[1]"):
        pass
    assert (tmp_path / "out[1]" / "result.txt").read_text() == "previous"
