import json

import pytest

from de3pipe.config import DataConfig
from de3pipe.data.prepare import PreparedData, prepare_task
from de3pipe.errors import De3Error
from tests.conftest import write_sst2


def test_prepare_carves_a_stratified_seeded_validation_split(tmp_path):
    glue = write_sst2(tmp_path / "glue", n_train=100)
    cfg = DataConfig(glue_dir=str(glue), validation_size=0.2)
    info = prepare_task("sst2", cfg, seed=1, out_dir=tmp_path / "a")
    assert info["splits"]["validation"]["rows"] == 20 and info["splits"]["train"]["rows"] == 80
    assert info["splits"]["validation"]["label_counts"] == {"negative": 10, "positive": 10}
    assert info["splits"]["test"]["rows"] == 20 and info["splits"]["submit"]["labeled"] == 0
    data = PreparedData.open(tmp_path / "a")
    train, val = data.split("train"), data.split("validation")
    assert not set(train["idx"]) & set(val["idx"])
    prepare_task("sst2", cfg, seed=1, out_dir=tmp_path / "b")
    assert PreparedData.open(tmp_path / "b").split("validation").equals(val)
    assert json.loads((tmp_path / "a" / "dataset.json").read_text())["task"] == "sst2"


def test_caps_are_stratified(tmp_path):
    glue = write_sst2(tmp_path / "glue", n_train=100)
    cfg = DataConfig(glue_dir=str(glue), validation_size=10, max_train_samples=30, max_test_samples=6)
    info = prepare_task("sst2", cfg, seed=0, out_dir=tmp_path / "out")
    assert info["splits"]["train"]["rows"] == 30
    assert info["splits"]["train"]["label_counts"] == {"negative": 15, "positive": 15}
    assert info["splits"]["test"]["rows"] == 6


def test_existing_output_is_kept_without_overwrite(tmp_path):
    glue = write_sst2(tmp_path / "glue")
    cfg = DataConfig(glue_dir=str(glue), validation_size=10)
    prepare_task("sst2", cfg, 0, tmp_path / "out")
    before = (tmp_path / "out" / "train.parquet").read_bytes()
    with pytest.raises(De3Error, match="already exists.*--overwrite"):
        prepare_task("sst2", cfg, 0, tmp_path / "out")
    assert (tmp_path / "out" / "train.parquet").read_bytes() == before


def test_empty_split_is_an_error(tmp_path):
    glue = write_sst2(tmp_path / "glue", n_train=10)
    with pytest.raises(De3Error, match="split 'train' of sst2 is empty"):
        prepare_task("sst2", DataConfig(glue_dir=str(glue), validation_size=10), 0, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_glue_dir_source_without_a_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    with pytest.raises(De3Error, match="neither data.glue_dir nor \\$GLUE_DIR is set"):
        prepare_task("sst2", DataConfig(source="glue_dir"), 0, tmp_path / "out")


def test_hub_failure_explains_the_offline_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(De3Error, match="could not load nyu-mll/glue/sst2.*GLUE_DIR"):
        prepare_task("sst2", DataConfig(), 0, tmp_path / "out")


def test_stsb_is_rejected_before_reading(tmp_path):
    with pytest.raises(De3Error, match="regression"):
        prepare_task("stsb", DataConfig(glue_dir=str(tmp_path)), 0, tmp_path / "out")
