"""Reading GLUE from the Hugging Face hub (de3pipe/data/hub.py). Only the network boundary,
``datasets.load_dataset``, is replaced: it answers with real in-memory ``datasets`` objects laid
out as nyu-mll/glue lays them out, and read_task turns them into the normalised frames."""

import datasets
import numpy as np
import pytest

from de3pipe.data import hub
from de3pipe.data.glue_dir import COLUMNS
from de3pipe.data.tasks import GlueTask, get_task
from de3pipe.errors import De3Error


def hub_split(idx, label, **texts) -> datasets.Dataset:
    """One split as the hub serves it: the text columns, a ClassLabel ``label`` (-1 on the
    unlabeled test split) and an int32 ``idx``."""
    features = datasets.Features({
        **{name: datasets.Value("string") for name in texts},
        "label": datasets.ClassLabel(names=["a", "b", "c"]),
        "idx": datasets.Value("int32"),
    })
    return datasets.Dataset.from_dict({**texts, "label": label, "idx": idx}, features=features)


SST2 = datasets.DatasetDict({
    "train": hub_split([0, 1, 2], [1, 0, 1], sentence=["a joy", "dull", "superb"]),
    "validation": hub_split([0, 1], [0, 1], sentence=["awful", "great"]),
    "test": hub_split([0, 1], [-1, -1], sentence=["meh", "fine"]),
})


def pair_splits(names):
    return datasets.DatasetDict({
        name: hub_split([10 + i, 20 + i], [i % 3, -1 if name.startswith("test") else 2],
                        premise=[f"{name} p0", f"{name} p1"], hypothesis=[f"{name} h0", f"{name} h1"])
        for i, name in enumerate(names)
    })


class Calls(list):
    """The load_dataset calls made, and the dataset each config answers with."""

    def __init__(self):
        super().__init__()
        self.answers = {"sst2": SST2}


@pytest.fixture()
def hub_calls(monkeypatch):
    made = Calls()

    def load_dataset(path, name=None, **kwargs):
        made.append((path, name, kwargs))
        return made.answers[name]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return made


def test_one_call_for_the_tasks_config(hub_calls):
    hub.read_task(get_task("SST-2"))
    assert hub_calls == [("nyu-mll/glue", "sst2", {})]
    assert hub.HUB_DATASET == "nyu-mll/glue"


def test_single_sentence_splits_become_frames(hub_calls):
    frames = hub.read_task(get_task("sst2"))
    assert list(frames) == ["train", "test", "submit"]  # our names: hub validation is our test, hub test our submit
    expected = {
        "train": ([0, 1, 2], ["a joy", "dull", "superb"], [1, 0, 1]),
        "test": ([0, 1], ["awful", "great"], [0, 1]),
        "submit": ([0, 1], ["meh", "fine"], [-1, -1]),
    }
    for split, (idx, text, label) in expected.items():
        frame = frames[split]
        assert tuple(frame.columns) == COLUMNS
        assert frame["idx"].dtype == np.int64 and frame["label"].dtype == np.int64
        assert frame["idx"].tolist() == idx and frame["text_a"].tolist() == text and frame["label"].tolist() == label
        assert frame["text_b"].isna().all()  # a single-sentence task has no second text


def test_pair_task_with_mnli_splits(hub_calls):
    names = ["train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched"]
    hub_calls.answers["mnli"] = pair_splits(names)
    frames = hub.read_task(get_task("mnli"))
    assert hub_calls[-1][:2] == ("nyu-mll/glue", "mnli")
    assert list(frames) == ["train", "test", "test_mismatched", "submit", "submit_mismatched"]
    for ours, theirs in zip(frames, names, strict=True):
        frame = frames[ours]
        assert tuple(frame.columns) == COLUMNS
        assert frame["text_a"].tolist() == [f"{theirs} p0", f"{theirs} p1"]
        assert frame["text_b"].tolist() == [f"{theirs} h0", f"{theirs} h1"]
        i = names.index(theirs)
        assert frame["idx"].tolist() == [10 + i, 20 + i]
        assert frame["label"].tolist() == [i % 3, -1 if theirs.startswith("test") else 2]


def test_frames_match_the_glue_folders_layout(hub_calls, glue_dir):
    """Both sources give the same columns and dtypes, so prepare can treat them alike."""
    from de3pipe.data import glue_dir as folder

    from_hub = hub.read_task(get_task("sst2"))
    from_folder = folder.read_task(glue_dir, get_task("sst2"))
    assert list(from_hub) == list(from_folder)
    for split in from_hub:
        assert list(from_hub[split].columns) == list(from_folder[split].columns)
        for column in ("idx", "label"):
            assert from_hub[split][column].dtype == from_folder[split][column].dtype


@pytest.mark.parametrize("error", [
    ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)"),
    OSError("offline mode is enabled"),
])
def test_offline_gives_one_line_of_advice(monkeypatch, error):
    def load_dataset(path, name=None, **kwargs):
        raise error

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(De3Error) as exc:
        hub.read_task(get_task("rte"))
    message = str(exc.value)
    assert message == (
        f"could not load nyu-mll/glue/rte from the Hugging Face hub ({type(error).__name__}: {error}); "
        "if you are offline, point GLUE_DIR (or data.glue_dir) at a folder in the GLUE TSV layout")
    assert exc.value.__cause__ is None and exc.value.__suppress_context__  # no traceback chain for the user


def test_an_unknown_config_is_reported_the_same_way(monkeypatch):
    def load_dataset(path, name=None, **kwargs):
        raise ValueError(f"BuilderConfig '{name}' not found. Available: ['ax', 'cola', 'mnli', 'sst2']")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    task = GlueTask(name="nosuch", glue_dir_name="NOSUCH", hub_columns=("sentence",), label_names=("a", "b"),
                    raw_labels=("0", "1"), metrics=("accuracy",))
    with pytest.raises(De3Error, match=r"could not load nyu-mll/glue/nosuch from the Hugging Face hub "
                                       r"\(ValueError: BuilderConfig 'nosuch' not found"):
        hub.read_task(task)


def test_real_offline_hub_without_a_cache(monkeypatch, tmp_path):
    """No replacement at all: with the hub offline and an empty cache, the real datasets library
    fails, and read_task turns that into the same advice."""
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    advice = r"; if you are offline, point GLUE_DIR \(or data.glue_dir\) at a folder in the GLUE TSV layout$"
    with pytest.raises(De3Error, match=r"^could not load nyu-mll/glue/sst2 from the Hugging Face hub \(.*" + advice):
        hub.read_task(get_task("sst2"))
