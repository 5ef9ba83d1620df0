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


def _treebank(folder, sentences):
    """An SST-2 folder whose train holds, like the real one, every sentence and each of its phrases."""
    task = folder / "SST-2"
    task.mkdir(parents=True, exist_ok=True)
    rows = []
    for sentence, label in sentences:
        words = sentence.split()
        rows.append((sentence, label))
        rows += [(" ".join(words[: len(words) // 2]), label), (" ".join(words[len(words) // 2 :]), label)]
    (task / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))
    (task / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in sentences[:4]))
    (task / "test.tsv").write_text("index\tsentence\n0\tsome text\n")
    return folder


def test_sst2_validation_is_whole_sentences_and_none_of_their_phrases_trains(tmp_path):
    from de3pipe.data.prepare import whole_sentences

    sentences = [(f"word{i} and then some more words number {i} end", i % 2) for i in range(40)]
    sentences.append(("a shared opening and then some more words number 0 end", 0))  # shares phrases with #0
    glue = _treebank(tmp_path / "glue", sentences)
    info = prepare_task("sst2", DataConfig(glue_dir=str(glue), validation_size=10), 0, tmp_path / "out")
    assert info["validation"]["unit"] == "sentences" and info["validation"]["whole_sentences_in_train"] == 41
    data = PreparedData.open(tmp_path / "out")
    validation, train = data.split("validation"), data.split("train")
    assert len(validation) == 10 and set(validation["text_a"]) <= {s for s, _ in sentences}
    for sentence in validation["text_a"]:
        words = sentence.split()
        spans = {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}
        assert not spans & set(train["text_a"]), "a phrase of a validation sentence is in train"
    assert whole_sentences(train["text_a"]).sum() == 31  # the other sentences stay, with their phrases
    rows = prepare_task("sst2", DataConfig(glue_dir=str(glue), validation_size=10, validation_unit="rows"), 0,
                        tmp_path / "rows")
    assert rows["validation"] == {"unit": "rows"} and rows["splits"]["train"]["rows"] == 3 * 41 - 10


def test_real_sst2_validation_looks_like_its_test():
    from scipy.stats import ks_2samp

    from tests.conftest import SHARED_GLUE

    if not (SHARED_GLUE / "SST-2" / "train.tsv").is_file():
        pytest.skip("the GLUE copy is not beside the repository")
    from de3pipe.data import glue_dir
    from de3pipe.data.prepare import carve_validation
    from de3pipe.data.tasks import get_task

    task = get_task("sst2")
    raw = glue_dir.read_task(SHARED_GLUE, task)
    validation, train, how = carve_validation(raw["train"], task, DataConfig(), seed=42)
    words = lambda frame: frame["text_a"].str.split().str.len()  # noqa: E731
    test_words, validation_words = words(raw["test"]), words(validation)
    assert ks_2samp(validation_words, test_words).statistic < 0.08
    assert abs(validation_words.median() - test_words.median()) <= 2
    assert abs(validation["label"].mean() - raw["test"]["label"].mean()) < 0.05
    assert len(validation) == round(0.1 * how["whole_sentences_in_train"])
    # the phrase-level default would not: validation made of short phrases
    rows, _, _ = carve_validation(raw["train"], task, DataConfig(validation_unit="rows"), seed=42)
    assert ks_2samp(words(rows), test_words).statistic > 0.3


def test_a_single_class_train_split_is_refused(tmp_path):
    glue = write_sst2(tmp_path / "glue", n_train=40)
    train = glue / "SST-2" / "train.tsv"
    train.write_text("".join(line.rsplit("\t", 1)[0] + "\t1\n" if i else line + "\n"
                             for i, line in enumerate(train.read_text().splitlines())))
    with pytest.raises(De3Error, match="train split of sst2 holds a single class \\(positive\\)"):
        prepare_task("sst2", DataConfig(glue_dir=str(glue), validation_size=10), 0, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", [1.5, 100.25])
def test_a_validation_size_that_is_neither_fraction_nor_count_is_refused(size):
    from de3pipe.config import load_config

    with pytest.raises(De3Error, match="data.validation_size: .*fraction below 1 .* or a whole number of rows"):
        load_config(None, [f"data.validation_size={size}"])


def test_prepared_bytes_do_not_depend_on_the_path_to_the_data(tmp_path, monkeypatch):
    glue = write_sst2(tmp_path / "glue", n_train=60)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "link").symlink_to(glue)
    monkeypatch.chdir(tmp_path)
    spellings = [str(glue), "glue", "./elsewhere/link"]
    for n, spelling in enumerate(spellings):
        prepare_task("sst2", DataConfig(glue_dir=spelling, validation_size=10), 0, tmp_path / f"out{n}")
    for name in ("dataset.json", "train.parquet", "validation.parquet", "test.parquet", "submit.parquet"):
        assert len({(tmp_path / f"out{n}" / name).read_bytes() for n in range(len(spellings))}) == 1, name
    source = json.loads((tmp_path / "out0" / "dataset.json").read_text())["source"]
    assert source["kind"] == "glue_dir" and set(source["sha256"]) == {"SST-2/train.tsv", "SST-2/dev.tsv", "SST-2/test.tsv"}
    assert str(tmp_path) not in (tmp_path / "out0" / "dataset.json").read_text()


def test_the_fingerprint_follows_the_contents(tmp_path):
    glue = write_sst2(tmp_path / "glue", n_train=60)
    cfg = DataConfig(glue_dir=str(glue), validation_size=10)
    before = prepare_task("sst2", cfg, 0, tmp_path / "a")["source"]
    with open(glue / "SST-2" / "test.tsv", "a") as f:
        f.write("999\tone more sentence\n")
    after = prepare_task("sst2", cfg, 0, tmp_path / "b")["source"]
    assert before["sha256"]["SST-2/train.tsv"] == after["sha256"]["SST-2/train.tsv"]
    assert before["sha256"]["SST-2/test.tsv"] != after["sha256"]["SST-2/test.tsv"]
