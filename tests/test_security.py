"""Security: weights only through safetensors, no remote code unless asked, YAML that cannot run
code, and documented servers that listen on loopback only."""

import re
from pathlib import Path

import pytest

from de3pipe.errors import De3Error

PACKAGE = Path(__file__).resolve().parents[1] / "de3pipe"
README = Path(__file__).resolve().parents[1] / "README.md"


def _sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE)): p.read_text() for p in PACKAGE.rglob("*.py")}


@pytest.mark.parametrize(
    "pattern, why",
    [
        (r"torch\.load\(", "torch.load unpickles"),
        (r"import pickle|pickle\.loads?\(|import dill|joblib\.load", "unpickling runs code"),
        (r"yaml\.load\(|yaml\.unsafe_load|yaml\.Loader", "only yaml.safe_load"),
        (r"allow_pickle\s*=\s*True", "numpy pickles"),
        (r"(?<![.\w])(eval|exec)\(", "nothing evaluates text"),
        (r"trust_remote_code\s*=\s*True", "remote code only when the config turns it on"),
    ],
)
def test_package_never_runs_code_from_data(pattern, why):
    hits = [name for name, text in _sources().items() if re.search(pattern, text)]
    assert hits == [], f"{why}: {hits}"


def test_remote_code_is_off_by_default():
    from de3pipe.config import load_config

    assert load_config(None, None).model.trust_remote_code is False


def test_pickled_weights_are_refused(tiny_model_dir, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file

    from de3pipe.modeling.backbone import load_pretrained

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(De3Error, match="never unpickles pytorch_model.bin"):
        load_pretrained(str(folder))


def test_config_yaml_cannot_construct_objects(tmp_path):
    from de3pipe.config import load_config

    path = tmp_path / "evil.yaml"
    path.write_text("finetune:\n  learning_rate: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(De3Error):
        load_config([path], None)


def test_documented_servers_listen_on_loopback_only():
    commands = [line for line in README.read_text().splitlines() if re.match(r"\s*mlflow (ui|server|models serve)\b", line)]
    assert commands, "the README documents mlflow ui"
    for line in commands:
        assert "0.0.0.0" not in line, line
    local = [line for line in commands if "mlflow ui" in line]
    assert local and all("--host 127.0.0.1" in line for line in local)
