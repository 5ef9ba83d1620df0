import pytest

from de3pipe.config import Config, load_config
from de3pipe.errors import De3Error


def test_defaults_follow_method_md():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.model.pooling == "auto" and cfg.model.distance == "euclidean"
    assert cfg.prototypes.ema_gamma == 0.1 and cfg.prototypes.freeze_backbone and cfg.prototypes.loss == "ce"
    assert cfg.calibration.targets == [1.5, 2.0, 3.0]


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 7\nfinetune:\n  epochs: 2\ntasks: [sst2]\n")
    cfg = load_config(path, ["finetune.learning_rate=3e-5", "calibration.targets=[2, 1.5]"])
    assert cfg.seed == 7 and cfg.finetune.epochs == 2 and cfg.finetune.learning_rate == 3e-5
    assert cfg.calibration.targets == [1.5, 2.0]


def test_unknown_key_suggests_the_nearest(tmp_path):
    with pytest.raises(De3Error, match=r"unknown key 'finetune.learning_rat'.*did you mean 'finetune.learning_rate'"):
        load_config(None, ["finetune.learning_rat=1e-5"])


def test_negative_learning_rate_is_rejected():
    with pytest.raises(De3Error, match=r"finetune.learning_rate: .*greater than 0"):
        load_config(None, ["finetune.learning_rate=-1e-5"])


def test_target_speedup_must_exceed_one():
    with pytest.raises(De3Error, match=r"calibration.targets: .*must be > 1"):
        load_config(None, ["calibration.targets=[1.0, 2.0]"])


def test_bad_choice_names_allowed_values():
    with pytest.raises(De3Error, match=r"model.distance: .*'euclidean', 'sq_euclidean' or 'cosine'"):
        load_config(None, ["model.distance=manhattan"])


def test_yaml_cannot_run_code(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("seed: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(De3Error, match="not valid YAML"):
        load_config(path)
