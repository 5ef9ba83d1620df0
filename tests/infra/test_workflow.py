"""The stage table (de3pipe/infra/workflow.py) and the files generated from it: dvc.yaml, the rule
files and the config schema never drift from it; each stage's code dependency is exactly its
module's import closure."""

import json

import yaml

from de3pipe.infra.workflow import STAGES, code_files, dvc_yaml, pipeline_schema, read_dataset_files, rule_files
from tests.pipeline.conftest import ROOT


def test_dvc_yaml_is_generated_from_the_workflow():
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    expected = dvc_yaml(config["tasks"], config["seeds"])
    assert (ROOT / "dvc.yaml").read_text() == expected, "dvc.yaml drifted: run `de3pipe dvc-yaml > dvc.yaml`"
    stages = yaml.safe_load(expected)["stages"]
    assert list(stages) == list(STAGES)
    for name, stage in stages.items():
        expected_params = [{"config/config.yaml": list(STAGES[name].params)}] if STAGES[name].params else None
        assert stage.get("params") == expected_params, name


def test_own_dataset_files_are_dependencies_of_prepare_only(tmp_path):
    config = tmp_path / "own.yaml"
    config.write_text(yaml.safe_dump({"tasks": ["questions", "topics", "rte"], "seeds": [1], "datasets": {
        "questions": {"train": "in/q.csv", "test": "in/q_test.csv", "unlabeled": "in/more.jsonl"},
        "topics": {"hub": "org/topics", "train": "train", "test": "test"},  # splits, not files
    }}))
    files = read_dataset_files(config)
    assert files == ["in/more.jsonl", "in/q.csv", "in/q_test.csv"]
    stages = yaml.safe_load(dvc_yaml(["questions", "topics", "rte"], [1], str(config), files))["stages"]
    assert stages["prepare"]["deps"][-3:] == files
    assert not any(f in stage["deps"] for name, stage in stages.items() if name != "prepare" for f in files)


def test_every_declared_param_is_in_every_config():
    """DVC fails on a params key missing from the file, so every config spells them all out."""
    for name in ("config.yaml", "test.yaml", "paper.yaml"):
        config = yaml.safe_load((ROOT / "config" / name).read_text())
        for stage in STAGES.values():
            for key in stage.params:
                node = config
                for part in key.split("."):
                    assert part in node, f"{name} lacks {key} (a param of stage {stage.name})"
                    node = node[part]


def test_config_schema_is_generated():
    committed = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert committed == json.loads(json.dumps(pipeline_schema())), "run `de3pipe config-schema > workflow/schemas/...`"


def test_config_readme_documents_every_key():
    from pydantic import BaseModel

    from de3pipe.config import Config

    text = (ROOT / "config" / "README.md").read_text()
    for section, info in Config.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            for key in info.annotation.model_fields:
                shared = f"`*.{key}`" if section in ("finetune", "prototypes") else None
                assert f"`{section}.{key}`" in text or (shared and shared in text), f"{section}.{key}"
        else:
            assert f"`{section}`" in text


def test_rule_files_are_generated_from_the_stage_table():
    """Each rule file is the stage table's, and shows literally what the rule reads and writes,
    the command it runs, its params, threads and resources."""
    generated = rule_files()
    assert sorted(generated) == sorted(f"{name}.smk" for name in STAGES)
    for name, text in generated.items():
        committed = (ROOT / "workflow" / "rules" / name).read_text()
        assert committed == text, f"workflow/rules/{name} drifted: run `de3pipe rules`"
    calibrate = generated["calibrate.smk"]
    assert 'signals=f"{RESULTS}/{{task}}/seed{{seed}}/signals",' in calibrate
    assert 'thresholds=f"{RESULTS}/{{task}}/seed{{seed}}/calibration/thresholds.json",' in calibrate
    assert "de3pipe calibrate --signals {input.signals} --seed {wildcards.seed} --out $(dirname {output.thresholds})" in calibrate
    assert 'calibration=setting("calibration"),' in calibrate and "threads: 1" in calibrate and "mem_mb=4000" in calibrate
    for code in code_files("calibrate"):
        assert f'"{code}",' in calibrate
    assert "stage_input" not in calibrate and "**" not in calibrate


def test_code_dependencies_are_the_stage_modules_import_closure():
    """No stage depends on the CLI or on the MLflow-only modules; the stages that never replay a
    strategy do not depend on the registry, and only the report depends on its rendering."""
    for name in STAGES:
        files = code_files(name)
        assert f"de3pipe/stages/{name}.py" in files
        assert not {"de3pipe/cli.py", "de3pipe/infra/tracking.py", "de3pipe/infra/workflow.py"} & set(files), name
    for name in ("prepare", "finetune", "prototypes", "signals"):  # the signal pass runs no strategy
        assert "de3pipe/method/strategies.py" not in code_files(name), name
    assert "de3pipe/modeling/training.py" not in code_files("prepare")
    for name in STAGES:
        assert ("de3pipe/report/tables.py" in code_files(name)) == (name == "report"), name


def test_no_import_cycle_between_config_and_the_registry():
    from de3pipe.infra.workflow import PACKAGE, imported_modules

    assert not any(m.startswith("de3pipe.method") for m in imported_modules(PACKAGE / "config.py"))


def test_imports_for_annotations_only_are_no_code_dependency(tmp_path):
    from de3pipe.infra.workflow import imported_modules

    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nimport typing\nfrom de3pipe.errors import De3Error\n"
                      "if TYPE_CHECKING:\n    from de3pipe.method.strategies import Strategy\n"
                      "if typing.TYPE_CHECKING:\n    import de3pipe.report.tables\nelse:\n    import de3pipe.config\n")
    assert imported_modules(module) == {"de3pipe", "de3pipe.errors", "de3pipe.errors.De3Error", "de3pipe.config"}
