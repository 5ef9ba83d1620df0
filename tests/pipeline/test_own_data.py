"""Datasets of your own through the whole workflow (README, "Your own data"): a synthetic 4-class
CSV and a JSONL sentence-pair dataset with unlabeled text, with the tiny config, in one run; a
change to one dataset's file reruns exactly that task's stages; and the README's example, its YAML
taken from the README and run with the README's command on files shaped as it describes."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest
import yaml

from tests.pipeline.conftest import ROOT, copy_workflow, run

WORDS = {"location": "where city river country town", "number": "how many much count number",
         "human": "who person wrote invented singer", "description": "what why describe meaning explain"}


def write_datasets(folder) -> None:
    rng = random.Random(0)
    (folder / "mydata").mkdir()
    rows = [{"question": " ".join(rng.sample(WORDS[k].split(), 3)) + f" {i}", "kind": k} for k in WORDS for i in range(40)]
    pd.DataFrame(rows).to_csv(folder / "mydata" / "kinds.csv", index=False)
    pairs = []
    for i in range(120):
        same = i % 2 == 0
        premise = " ".join(rng.sample("the cat sat on a mat near the door".split(), 5))
        pairs.append({"premise": premise, "hypothesis": premise if same else "a dog ran far away " + str(i),
                      "relation": "same" if same else "different"})
    with open(folder / "mydata" / "pairs.jsonl", "w") as handle:
        handle.writelines(json.dumps(p) + "\n" for p in pairs[:100])
    with open(folder / "mydata" / "pairs_test.jsonl", "w") as handle:
        handle.writelines(json.dumps(p) + "\n" for p in pairs[100:])
    pd.DataFrame(rows[::7])[["question"]].to_csv(folder / "mydata" / "more_kinds.csv", index=False)
    with open(folder / "mydata" / "more_pairs.jsonl", "w") as handle:
        handle.writelines(json.dumps({k: p[k] for k in ("premise", "hypothesis")}) + "\n" for p in pairs[::9])


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    folder = copy_workflow(tmp_path_factory.mktemp("own-data") / "project")
    write_datasets(folder)
    config = yaml.safe_load((folder / "config" / "test.yaml").read_text())
    config["tasks"] = ["kinds", "pairs"]
    config["datasets"] = {
        "kinds": {"train": "mydata/kinds.csv", "unlabeled": "mydata/more_kinds.csv", "text": "question",
                      "label": "kind", "metric": "macro_f1"},
        "pairs": {"train": "mydata/pairs.jsonl", "test": "mydata/pairs_test.jsonl", "unlabeled": "mydata/more_pairs.jsonl",
                  "text": ["premise", "hypothesis"], "label": "relation", "labels": ["different", "same"],
                  "metric": "f1"},
    }
    config["tracking"] = {"enabled": False}
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run(["snakemake", "all", "--cores", "2"], folder)
    return folder


def test_both_datasets_run_every_stage_into_the_report(own_run):
    report = (own_run / "data" / "report" / "report.md").read_text()
    assert "| kinds | macro_f1 |" in report and "| pairs | f1 |" in report
    assert "best single class" in report
    assert "### kinds: recall per class" in report and "### pairs: recall per class" not in report  # 4 classes, 2
    metrics = json.loads((own_run / "data" / "kinds" / "seed1" / "evaluation" / "metrics.json").read_text())
    assert set(metrics["full_model"]) == {"macro_f1", "accuracy"}
    info = json.loads((own_run / "data" / "kinds" / "seed1" / "prepared" / "dataset.json").read_text())
    assert info["label_names"] == ["description", "human", "location", "number"]
    assert "mydata" not in json.dumps(info["source"])  # the files' sha256 and the definition, never a path
    submission = (own_run / "data" / "kinds" / "seed1" / "evaluation" / "submission" / "de3_2" / "kinds.tsv")
    predicted = set(submission.read_text().split("\n")[1].split("\t")[1:])
    assert predicted <= set(WORDS)  # label names, not indices


def test_changing_one_datasets_file_reruns_exactly_that_task(own_run):
    with open(own_run / "mydata" / "pairs.jsonl", "a") as handle:
        handle.write(json.dumps({"premise": "one more", "hypothesis": "one more", "relation": "same"}) + "\n")
    proc = run(["snakemake", "-n", "all"], own_run)
    assert "data/pairs/seed1/prepared" in proc.stdout and "data/kinds/seed1/prepared" not in proc.stdout


def readme_example() -> tuple[str, dict]:
    """The README's "Your own data" example: its config file's name and its YAML."""
    section = (ROOT / "README.md").read_text().split("## Your own data", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    name = block.split("\n", 1)[0].removeprefix("# ").split(" ")[0]
    return name, yaml.safe_load(block)


def test_the_readme_example_runs_as_written(own_run):
    name, example = readme_example()
    assert name == "config/questions.yaml" and "snakemake all --cores 2 --configfile config/questions.yaml" in (
        ROOT / "README.md").read_text()
    (task, entry), = example["datasets"].items()
    rng = random.Random(1)
    rows = [{"question": f"{label} question {rng.random():.6f}", entry["label"]: label}
            for label in entry["labels"] for _ in range(12)]
    frame = pd.DataFrame(rows).rename(columns={"question": entry["text"]})
    frame.iloc[::4].to_csv(own_run / entry["test"], index=False)
    frame.drop(frame.index[::4]).to_csv(own_run / entry["train"], index=False)
    frame[[entry["text"]]].iloc[::5].to_csv(own_run / entry["unlabeled"], index=False)
    (own_run / name).write_text(yaml.safe_dump(example, sort_keys=False))
    run(["snakemake", "all", "--cores", "2", "--configfile", name], own_run)
    report = (own_run / "data" / "report" / "report.md").read_text()
    assert f"| {task} | {entry['metric']} |" in report and f"### {task}: recall per class" in report
    assert all(f"| {label} |" in report for label in entry["labels"])
