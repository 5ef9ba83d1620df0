import csv
import os
from pathlib import Path

import pytest

from de3pipe.data.glue_dir import read_task, read_tsv
from de3pipe.errors import De3Error
from de3pipe.data.tasks import CLASSIFICATION_TASKS, get_task
from tests.conftest import SHARED_GLUE


def _spec(task, split):
    return get_task(task).splits[split][0]


def test_cola_has_no_header(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\ngj04\t0\t*\tThe more he reads, the.\n")
    frame = read_tsv(path, _spec("cola", "train"), get_task("cola"))
    assert frame["label"].tolist() == [1, 0]
    assert frame["text_a"].iloc[1] == "The more he reads, the."
    assert frame["idx"].tolist() == [0, 1]


def test_mrpc_bom_header_and_stray_quotes(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_bytes(
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t1\t2\tHe said "hello\tShe said "bye" twice\n'.encode()
    )
    frame = read_tsv(path, _spec("mrpc", "test"), get_task("mrpc"))
    assert frame["text_a"].iloc[0] == 'He said "hello'
    assert frame["text_b"].iloc[0] == 'She said "bye" twice'
    assert frame["label"].iloc[0] == 1


def test_string_labels_map_to_hub_order(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tnot_entailment\n1\tc\td\tentailment\n")
    frame = read_tsv(path, _spec("rte", "test"), get_task("rte"))
    assert frame["label"].tolist() == [1, 0]


def test_wrong_column_count_names_file_and_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\ngood\t1\nbad\textra\t0\n")
    with pytest.raises(De3Error, match=r"train.tsv:3: 3 tab-separated columns, expected 2"):
        read_tsv(path, _spec("sst2", "train"), get_task("sst2"))


def test_unknown_label_is_reported(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\ngood\t1\nbad\t7\n")
    with pytest.raises(De3Error, match=r"train.tsv:3: label '7' is not one of sst2's labels"):
        read_tsv(path, _spec("sst2", "train"), get_task("sst2"))


def test_missing_file(tmp_path):
    with pytest.raises(De3Error, match=r"missing GLUE file .*SST-2/train.tsv"):
        read_tsv(tmp_path / "nope.tsv", _spec("sst2", "train"), get_task("sst2"))


def test_missing_folder(tmp_path):
    with pytest.raises(De3Error, match="GLUE folder .* does not exist"):
        read_task(tmp_path / "absent", get_task("sst2"))
    with pytest.raises(De3Error, match="has no SST-2/ folder"):
        read_task(tmp_path, get_task("sst2"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"sentence\tlabel\n", "has a header but no rows"),
        (b"sentence\tlabel\nok\t1\nbad\x00\t0\n", r":3: contains a NUL byte"),
        (b"sentence\tlabel\nok\t1\nbad \xff\xfe\t0\n", r":3: not valid UTF-8"),
        (b"sentence\tlabel\n" + b"x" * (10 * 1024 * 1024) + b"\t1\n", r":2: cannot parse the line"),
        (b"text\tgold\nok\t1\n", r"header \['text', 'gold'\] lacks the column"),
    ],
)
def test_broken_files_get_clear_errors(tmp_path, content, message):
    path = tmp_path / "train.tsv"
    path.write_bytes(content)
    with pytest.raises(De3Error, match=message):
        read_tsv(path, _spec("sst2", "train"), get_task("sst2"))


def _shared_glue() -> Path:
    return Path(os.environ.get("GLUE_DIR", SHARED_GLUE))


@pytest.mark.skipif(not _shared_glue().is_dir(), reason="the shared GLUE folder is not here")
def test_real_glue_files_read_with_manifest_row_counts():
    folder = _shared_glue()
    with open(folder / "MANIFEST.tsv", newline="") as handle:
        manifest = {(r["task"], r["file"]): int(r["rows"]) for r in csv.DictReader(handle, delimiter="\t")}
    checked = 0
    for name in CLASSIFICATION_TASKS:
        task = get_task(name)
        if not (folder / task.glue_dir_name).is_dir():
            continue
        for split, frame in read_task(folder, task).items():
            spec = task.splits[split][0]
            assert len(frame) == manifest[(task.glue_dir_name, spec.name)], (name, split)
            assert (frame["label"] >= 0).all() == (split != "submit")
            checked += 1
    assert checked >= 12  # CoLA, SST-2, MRPC, RTE, WNLI x 3 files
