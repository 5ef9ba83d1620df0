"""One small real run on the packaged pretrained MiniLM: a few steps of both stages."""

import pytest

from de3pipe.modeling.batching import encode_split
from de3pipe.config import load_config
from de3pipe.data.prepare import PreparedData, prepare_task
from de3pipe.inference.engine import collect_signals
from de3pipe.modeling import load_checkpoint
from de3pipe.modeling.training import finetune, train_prototypes


@pytest.mark.slow
def test_few_steps_of_both_stages_on_the_packaged_model(glue_dir, tmp_path):
    cfg = load_config(
        None,
        [
            f"data.glue_dir={glue_dir}",
            "data.validation_size=20",
            "finetune.max_steps=3",
            "finetune.batch_size=8",
            "prototypes.max_steps=3",
            "prototypes.batch_size=8",
        ],
    )
    prepare_task("sst2", cfg.data, cfg.seed, tmp_path / "data")
    data = PreparedData.open(tmp_path / "data")
    s1 = finetune(data, cfg, tmp_path / "ft", progress=False)
    s2 = train_prototypes(data, cfg, tmp_path / "ft", tmp_path / "proto", progress=False)
    assert s1["steps"] == 3 and s2["steps"] == 3
    model, tokenizer = load_checkpoint(tmp_path / "proto", require_stage="prototyped")
    assert model.num_layers == 6 and model.config.pooling == "mean" and model.config.hidden_size == 384
    split = encode_split(data.split("test"), tokenizer, model.config.max_length)
    signals = collect_signals(model, tokenizer, split, 16, 1e-8, {"task": "sst2", "split": "test"}, progress=False)
    assert signals.log_probs.shape == (20, 6, 2) and signals.dr.shape == (20, 5)
    assert ((signals.dr >= 0) & (signals.dr <= 1)).all() and ((signals.entropy >= 0) & (signals.entropy <= 1)).all()
