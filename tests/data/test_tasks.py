import pytest

from de3pipe.errors import De3Error
from de3pipe.data.tasks import CLASSIFICATION_TASKS, GLUE_TASKS, get_task


def test_all_nine_glue_tasks_are_in_the_table():
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    assert "stsb" not in CLASSIFICATION_TASKS


@pytest.mark.parametrize("alias", ["sst2", "SST-2", "sst-2", "Sst2"])
def test_task_aliases(alias):
    assert get_task(alias).name == "sst2"


def test_every_classification_task_is_consistent():
    for name in CLASSIFICATION_TASKS:
        task = get_task(name)
        assert len(task.raw_labels) == task.num_labels >= 2
        assert {"train", "test", "submit"} <= set(task.splits)
        assert set(task.submission_files) == set(task.submit_splits)
        assert task.metrics[0] in {"accuracy", "f1", "matthews"}


def test_stsb_is_rejected_with_the_reason():
    with pytest.raises(De3Error, match="regression.*prototypes need classes"):
        get_task("stsb")


def test_unknown_task_suggests_the_nearest():
    with pytest.raises(De3Error, match=r"unknown task 'sst3'.*did you mean 'sst2'"):
        get_task("sst3")


def test_mnli_has_matched_and_mismatched_files():
    task = get_task("mnli")
    assert task.splits["test"][0].name == "dev_matched.tsv"
    assert task.splits["test_mismatched"][0].name == "dev_mismatched.tsv"
    assert task.submission_files == {"submit": "MNLI-m.tsv", "submit_mismatched": "MNLI-mm.tsv"}
