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


def test_per_task_recipes_override_only_their_task(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("finetune:\n  epochs: 2\nrecipes:\n  cola:\n    finetune: {epochs: 5, learning_rate: 1.0e-4}\n"
                    "    data: {max_train_samples: null}\n    model: {max_length: 64}\n")
    cfg = load_config(path)
    cola, rte = cfg.for_task("cola"), cfg.for_task("rte")
    assert (cola.finetune.epochs, cola.finetune.learning_rate, cola.model.max_length) == (5, 1e-4, 64)
    assert (rte.finetune.epochs, rte.finetune.learning_rate, rte.model.max_length) == (2, 2e-5, 128)
    assert cola.data.max_train_samples is None and cola.recipes == cfg.recipes


@pytest.mark.parametrize(("recipe", "message"), [
    ("{colaa: {finetune: {epochs: 5}}}", r"recipes: unknown task 'colaa'; did you mean 'cola'\?"),
    ("{cola: {finetune: {epoch: 5}}}", r"recipes.cola: unknown key 'finetune.epoch'; did you mean 'finetune.epochs'"),
    ("{cola: {finetune: {learning_rate: -1}}}", r"recipes.cola: finetune.learning_rate: .*greater than 0"),
    ("{cola: {calibration: {targets: [2]}}}", r"recipes.cola: \['calibration'\] cannot vary per task"),
    ("{stsb: {finetune: {epochs: 1}}}", r"recipes: unknown task 'stsb'"),
])
def test_bad_recipes_are_refused_with_the_fix(recipe, message):
    with pytest.raises(De3Error, match=message):
        load_config(None, [f"recipes={recipe}"])
