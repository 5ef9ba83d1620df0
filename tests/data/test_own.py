"""A user's own dataset files (de3pipe/data/own.py) and its config entry: every bad input is one
line naming the dataset, the file, the row where there is one, and the fix."""

import json

import pandas as pd
import pytest
import yaml

from de3pipe.config import validate_tree
from de3pipe.data import own
from de3pipe.data.tasks import get_task
from de3pipe.errors import De3Error

WHERE = "datasets.questions.train"


def _csv(tmp_path, text: str, name: str = "train.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_format_reads_to_the_same_table(tmp_path):
    rows = [{"text": "what is a cat", "label": "entity"}, {"text": "who wrote it", "label": "human"}]
    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_csv(tmp_path / "a.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for name in ("a.csv", "a.tsv", "a.parquet", "a.jsonl"):
        read = own.read_table(tmp_path / name, WHERE)
        assert read[["text", "label"]].astype(str).to_dict("records") == rows, name


def test_a_tsv_keeps_stray_quotes_as_text_and_reads_quoted_fields(tmp_path):
    """GLUE-style TSV lines holding unbalanced quotes stay one row each (a quote-aware reader would run
    the first one across the tabs and lines that follow); a TSV written with quoting still reads."""
    (tmp_path / "stray.tsv").write_text('sentence\tlabel\n" a quote that never closes\tpos\n'
                                        'plain text\tneg\nsays "hi\tpos\n')
    read = own.read_table(tmp_path / "stray.tsv", WHERE)
    assert read["sentence"].tolist() == ['" a quote that never closes', "plain text", 'says "hi']
    assert read["label"].tolist() == ["pos", "neg", "pos"]
    quoted = pd.DataFrame({"text": ["a\ttab inside", 'a "quoted" word', "two\nlines"], "label": ["x", "y", "z"]})
    quoted.to_csv(tmp_path / "quoted.tsv", sep="\t", index=False)
    assert own.read_table(tmp_path / "quoted.tsv", WHERE).to_dict("records") == quoted.to_dict("records")


@pytest.mark.parametrize(("content", "message"), [
    (None, r"datasets.questions.train: .*missing.csv does not exist; fix the path"),
    ("", r"train.csv is empty; it needs a header and at least one row"),
    ("text,label\n", r"train.csv has no rows"),
])
def test_missing_and_empty_files(tmp_path, content, message):
    path = tmp_path / "missing.csv" if content is None else _csv(tmp_path, content)
    with pytest.raises(De3Error, match=message):
        own.read_table(path, WHERE)


def test_bytes_that_are_not_utf8_name_the_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"text,label\nfine,a\ncaf\xe9,b\n")
    with pytest.raises(De3Error, match=r"train.csv line 3 is not UTF-8 \(byte 0xe9 at offset 21\); re-save the file as UTF-8"):
        own.read_table(path, WHERE)


def test_a_bad_jsonl_line_and_an_unknown_extension(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "a", "label": 1}\nnot json\n')
    with pytest.raises(De3Error, match=r"a.jsonl line 2 is not JSON"):
        own.read_table(tmp_path / "a.jsonl", WHERE)
    (tmp_path / "a.xlsx").write_text("x")
    with pytest.raises(De3Error, match=r"unknown extension '.xlsx'; use .csv, .tsv, .jsonl or .parquet"):
        own.read_table(tmp_path / "a.xlsx", WHERE)


def test_a_missing_column_suggests_the_nearest(tmp_path):
    frame = own.read_table(_csv(tmp_path, "question,label\nwhat,a\n"), WHERE)
    with pytest.raises(De3Error, match=r"has no column 'questoin'; did you mean 'question'\? \(columns: question, label\)"):
        own.column(frame, "questoin", tmp_path / "train.csv", WHERE)


def test_empty_text_and_empty_labels_name_their_row(tmp_path):
    path = _csv(tmp_path, 'text,label\nfine,a\n"",b\n   ,a\n')
    frame = own.read_table(path, WHERE)
    with pytest.raises(De3Error, match=r"train.csv row 2: the text column 'text' is empty; fill or remove the row \(2 such rows\)"):
        own.texts(frame, ["text"], path, WHERE)
    path = _csv(tmp_path, "text,label\nfine,a\nalso fine,\n")
    with pytest.raises(De3Error, match=r"row 2: the label column 'label' is empty"):
        own.labels_of(own.read_table(path, WHERE), "label", path, WHERE)


def test_labels_outside_the_declared_ones(tmp_path):
    path = _csv(tmp_path, "text,label\na,x\nb,y\nc,z\n")
    labels = own.labels_of(own.read_table(path, WHERE), "label", path, WHERE)
    assert own.index_labels(labels[:2], ["y", "x"], path, WHERE).tolist() == [1, 0]
    with pytest.raises(De3Error, match=r"row 3: label 'z' is not one of the labels \['x', 'y'\]; add it to the "
                                       r"dataset's labels or fix the row"):
        own.index_labels(labels, ["x", "y"], path, WHERE)


def test_numeric_labels_compare_as_text(tmp_path):
    pd.DataFrame({"text": ["a", "b"], "label": [1.0, 2.0]}).to_parquet(tmp_path / "a.parquet")
    path = tmp_path / "a.parquet"
    assert own.labels_of(own.read_table(path, WHERE), "label", path, WHERE).tolist() == ["1", "2"]


def test_undeclared_numeric_class_names_sort_by_value(tmp_path):
    assert sorted(["10", "2", "b", "1", "nan", "-1.5"], key=own.label_order) == ["-1.5", "1", "2", "10", "b", "nan"]
    rows = pd.DataFrame({"question": [f"q {i}" for i in range(120)], "kind": [i % 12 for i in range(120)]})
    rows.to_csv(tmp_path / "twelve.csv", index=False)
    info, _ = _prepare(tmp_path, {"train": str(tmp_path / "twelve.csv")}, test_size=0.5)
    assert info["label_names"] == [str(k) for k in range(12)]


def test_a_dataset_is_a_task_under_its_name():
    validate_tree({"datasets": {"questions": {"train": "t.csv", "text": ["q", "context"], "labels": ["a", "b", "c"],
                                              "metric": "macro_f1"}}}, "test")
    task = get_task("questions")
    assert task.is_own and task.is_pair and task.label_names == ("a", "b", "c")
    assert task.metrics == ("macro_f1", "accuracy")


@pytest.mark.parametrize(("datasets", "message"), [
    ({"sst2": {"train": "x.csv"}}, r"datasets.sst2: the name clashes with the GLUE task sst2; rename the dataset"),
    ({"MRPC": {"train": "x.csv"}}, r"datasets.MRPC: the name clashes with the GLUE task mrpc"),
    ({"my-data": {"train": "x.csv"}}, r"datasets.my-data: a dataset name is lower-case letters, digits and underscores"),
    ({"q": {"train": "x.csv", "labels": ["a"]}}, r"a classifier needs at least two labels"),
    ({"q": {"train": "x.csv", "labels": ["a", "a"]}}, r"labels must be distinct"),
    ({"q": {"train": "x.csv", "labels": ["a", "b", "c"], "metric": "f1"}}, r"metric f1 is binary; with 3 labels use macro_f1"),
    ({"q": {"train": "x.csv", "metric": "auc"}}, r"datasets.q.metric"),
])
def test_bad_dataset_entries_get_one_line(datasets, message):
    with pytest.raises(De3Error, match=message):
        validate_tree({"datasets": datasets}, "test")


# ---- preparation of a dataset of your own ----

def _four_classes(tmp_path, per_class=12, name="train.csv"):
    rows = [{"question": f"question {c} number {i}", "kind": c} for c in ("loc", "num", "hum", "desc")
            for i in range(per_class)]
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _prepare(tmp_path, dataset: dict, out="prepared", **data):
    from de3pipe.data.prepare import PreparedData, prepare_task

    cfg = validate_tree({"datasets": {"questions": {"text": "question", "label": "kind", **dataset}},
                         "data": {"validation_size": 0.25, **data}}, "test")
    info = prepare_task("questions", cfg.data, 1, tmp_path / out)
    return info, PreparedData.open(tmp_path / out)


def test_a_four_class_csv_is_prepared_with_a_carved_stratified_test_split(tmp_path):
    train = _four_classes(tmp_path)
    info, prepared = _prepare(tmp_path, {"train": str(train)})
    assert info["label_names"] == ["desc", "hum", "loc", "num"]  # sorted train labels
    assert prepared.task.label_names == ("desc", "hum", "loc", "num") and prepared.task.num_labels == 4
    for split in ("train", "validation", "test"):
        counts = info["splits"][split]["label_counts"]
        assert set(counts) == {"desc", "hum", "loc", "num"}, (split, counts)
        assert max(counts.values()) - min(counts.values()) <= 1, (split, counts)  # stratified
    assert info["splits"]["test"]["rows"] == 10  # 0.2 of 48 rows
    assert set(info["source"]["sha256"]) == {"train"} and str(tmp_path) not in json.dumps(info["source"])
    assert info["source"]["test"] == {"carved_from": "train", "size": 0.2, "seed": 1}


def test_declared_labels_keep_their_order_and_a_test_file_is_used(tmp_path):
    train = _four_classes(tmp_path)
    test = _four_classes(tmp_path, per_class=3, name="test.csv")
    info, prepared = _prepare(tmp_path, {"train": str(train), "test": str(test),
                                         "labels": ["loc", "num", "hum", "desc"]})
    assert prepared.task.label_names == ("loc", "num", "hum", "desc")
    assert info["splits"]["test"]["rows"] == 12
    assert prepared.split("train")["label"].max() == 3


def test_a_class_too_thin_to_stratify_and_a_single_class(tmp_path):
    path = tmp_path / "train.csv"
    pd.DataFrame({"question": [f"q{i}" for i in range(12)], "kind": ["a"] * 10 + ["b"] * 2}).to_csv(path, index=False)
    with pytest.raises(De3Error, match=r"datasets.questions.train: class 'b' has 2 example\(s\); carving a stratified "
                                       r"validation and test split from train needs at least 3 per class"):
        _prepare(tmp_path, {"train": str(path)})
    assert not (tmp_path / "prepared").exists()  # nothing written
    pd.DataFrame({"question": ["q1", "q2", "q3"], "kind": ["a"] * 3}).to_csv(path, index=False)
    with pytest.raises(De3Error, match=r"holds a single class \('a'\); a classifier needs examples of at least two"):
        _prepare(tmp_path, {"train": str(path)})


def test_a_test_file_whose_labels_are_all_unknown(tmp_path):
    train = _four_classes(tmp_path)
    test = tmp_path / "test.csv"
    pd.DataFrame({"question": ["x", "y"], "kind": ["LOC", "NUM"]}).to_csv(test, index=False)
    with pytest.raises(De3Error, match=r"datasets.questions.test: none of .*test.csv's labels \(LOC, NUM\) is among the "
                                       r"labels \['desc', 'hum', 'loc', 'num'\]; check the test file's label column"):
        _prepare(tmp_path, {"train": str(train), "test": str(test)})


def test_a_parquet_pair_dataset_with_unlabeled_text(tmp_path):
    rows = [{"premise": f"p {i}", "hypothesis": f"h {i}", "y": i % 3} for i in range(30)]
    pd.DataFrame(rows).to_parquet(tmp_path / "train.parquet")
    pd.DataFrame(rows[:5]).drop(columns="y").to_parquet(tmp_path / "more.parquet")
    info, prepared = _prepare(tmp_path, {"train": str(tmp_path / "train.parquet"), "text": ["premise", "hypothesis"],
                                         "label": "y", "unlabeled": str(tmp_path / "more.parquet")})
    assert prepared.task.is_pair and info["label_names"] == ["0", "1", "2"]
    submit = prepared.split("submit")
    assert len(submit) == 5 and (submit["label"] == -1).all() and submit["text_b"].tolist()[0] == "h 0"


def test_a_parquet_file_through_de3pipe_prepare(tmp_path):
    from de3pipe.data.prepare import PreparedData
    from tests.helpers import invoke

    rows = [{"review": f"text number {i}", "stars": ("one", "two", "three")[i % 3]} for i in range(60)]
    pd.DataFrame(rows).to_parquet(tmp_path / "reviews.parquet")
    config = tmp_path / "own.yaml"
    config.write_text(yaml.safe_dump({"datasets": {"reviews": {
        "train": str(tmp_path / "reviews.parquet"), "text": "review", "label": "stars", "metric": "macro_f1"}}}))
    result = invoke("prepare", "--task", "reviews", "--seed", 3, "--out", tmp_path / "prepared", "--config", config,
                    "--quiet")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "prepared" / "dataset.json").read_text())
    assert info["label_names"] == ["one", "three", "two"]
    test = PreparedData.open(tmp_path / "prepared").split("test")
    assert len(test) == 12 and test["label"].value_counts().tolist() == [4, 4, 4]  # 0.2 carved, stratified
    bad = invoke("prepare", "--task", "reviews", "--seed", 3, "--out", tmp_path / "again", "--config", config,
                 "--set", "datasets.reviews.label=star")
    assert bad.exit_code != 0 and "Traceback" not in bad.output and "stars" in bad.output
    assert not (tmp_path / "again").exists()


def test_a_hub_dataset_builds_the_right_load_dataset_calls(tmp_path, monkeypatch):
    """Only the network boundary is replaced: load_dataset answers with real in-memory datasets."""
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "coarse_label": datasets.ClassLabel(names=["ABBR", "DESC", "ENTY"])})
    served = {
        "train": datasets.Dataset.from_dict({"text": [f"q{i}" for i in range(30)], "coarse_label": [i % 3 for i in range(30)]},
                                            features=features),
        "test": datasets.Dataset.from_dict({"text": ["t0", "t1", "t2"], "coarse_label": [0, 1, 2]}, features=features),
    }
    calls = []

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return served[split]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    info, prepared = _prepare(tmp_path, {"hub": "CogComp/trec", "hub_config": "default", "train": "train",
                                         "test": "test", "text": "text", "label": "coarse_label"})
    assert calls == [("CogComp/trec", "default", "train"), ("CogComp/trec", "default", "test")]
    assert info["label_names"] == ["ABBR", "DESC", "ENTY"]  # the hub's class names
    assert info["source"]["kind"] == "hub" and set(info["source"]["sha256"]) == {"train", "test"}
    assert prepared.split("test")["label"].tolist() == [0, 1, 2]
