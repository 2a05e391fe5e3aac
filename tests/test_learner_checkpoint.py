"""Checkpoint/resume: nothing lost (weights, optimizer, schedule, RNG, extra state), atomic, rotated."""

import random

import numpy as np
import pytest
import torch

pytest.importorskip("deepspeed")
transformers = pytest.importorskip("transformers")

from conftest import LEARNER_VOCAB  # noqa: E402
from conftest import tiny_learner_llama as tiny_llama  # noqa: E402

from oat_agents.learners import (  # noqa: E402
    CheckpointManager,
    LearnerConfig,
    LearnerEngine,
    latest_tag,
    load_checkpoint,
    save_checkpoint,
)
from oat_agents.learners import checkpoint as ckpt_mod  # noqa: E402
from oat_agents.learners.checkpoint import list_checkpoints  # noqa: E402

VOCAB = LEARNER_VOCAB


@pytest.fixture(scope="session", autouse=True)
def process_group(learner_process_group):
    yield


def lm_loss(model, batch):
    return model(input_ids=batch, labels=batch).loss


def random_batch() -> torch.Tensor:
    # Drawn from the global torch RNG on purpose: resumed RNG must reproduce the data stream too.
    return torch.randint(0, VOCAB, (2, 12))


def make_engine(stage: int, seed: int = 0, **kw) -> LearnerEngine:
    c = LearnerConfig(
        zero_stage=stage,
        learning_rate=1e-2,
        micro_batch_size=2,
        lr_schedule="cosine",
        total_steps=10,
        warmup_steps=2,
        min_lr_ratio=0.1,
        **kw,
    )
    return LearnerEngine(tiny_llama(seed), c)


def rng_draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_resume_is_exact(tmp_path, stage):
    a = make_engine(stage)
    for _ in range(3):
        a.train_step(lm_loss, random_batch())
    extra = {"queries": 96, "buffer": [("prompt", "chosen", "rejected")], "stream_pos": 7}
    path = save_checkpoint(a, tmp_path, extra_state=extra)
    assert path.name == "step_000000003" and latest_tag(tmp_path) == path.name

    draws = rng_draws()
    cont_a = [a.train_step(lm_loss, random_batch()) for _ in range(2)]

    b = make_engine(stage, seed=123)  # different init weights and re-seeded RNGs
    tag, got_extra = load_checkpoint(b, tmp_path)
    assert tag == path.name and got_extra == extra
    assert b.global_step == 3
    assert rng_draws() == draws
    cont_b = [b.train_step(lm_loss, random_batch()) for _ in range(2)]
    for ma, mb in zip(cont_a, cont_b):
        # Second step's loss depends on the restored optimizer moments and LR schedule position.
        assert mb["train/loss"] == pytest.approx(ma["train/loss"], rel=1e-6, abs=1e-7)
        assert mb["train/lr"] == pytest.approx(ma["train/lr"])


def test_interrupted_save_keeps_latest(tmp_path, monkeypatch):
    eng = make_engine(0)
    eng.train_step(lm_loss, random_batch())
    first = save_checkpoint(eng, tmp_path, extra_state={"n": 1}).name
    eng.train_step(lm_loss, random_batch())

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-save")

    # Die after DeepSpeed wrote its files but before the checkpoint was complete.
    monkeypatch.setattr(ckpt_mod, "capture_rng_state", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(eng, tmp_path, extra_state={"n": 2})
    monkeypatch.undo()

    assert (tmp_path / ".tmp-step_000000002").is_dir()  # partial write left aside
    assert (tmp_path / "latest").read_text() == first
    assert list_checkpoints(tmp_path) == [first]
    fresh = make_engine(0, seed=5)
    assert load_checkpoint(fresh, tmp_path) == (first, {"n": 1})

    # The next save cleans the leftover and completes.
    second = save_checkpoint(eng, tmp_path, extra_state={"n": 2}).name
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())
    assert latest_tag(tmp_path) == second


def test_interrupt_before_latest_update_and_corrupt_latest(tmp_path, monkeypatch):
    eng = make_engine(0)
    first = save_checkpoint(eng, tmp_path).name
    eng.train_step(lm_loss, random_batch())
    real_write = ckpt_mod._write_text_atomic

    def crash_on_latest(path, text):
        if path.name == "latest":
            raise KeyboardInterrupt
        real_write(path, text)

    monkeypatch.setattr(ckpt_mod, "_write_text_atomic", crash_on_latest)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(eng, tmp_path)
    monkeypatch.undo()
    assert latest_tag(tmp_path) == first  # the pointer still names a complete checkpoint

    (tmp_path / "latest").write_text("garbage-tag")
    assert latest_tag(tmp_path) == "step_000000001"  # falls back to the newest complete one


def test_keep_last_rotation_and_manager(tmp_path):
    eng = make_engine(2)
    mgr = CheckpointManager(tmp_path / "ckpt", keep_last=2)
    assert mgr.resume(eng) is None  # nothing to resume yet
    for i in range(4):
        eng.train_step(lm_loss, random_batch())
        mgr.save(eng, extra_state={"round": i})
    assert mgr.tags() == ["step_000000003", "step_000000004"]
    assert mgr.latest() == "step_000000004"
    # DeepSpeed also drops its zero_to_fp32.py recovery scripts next to the tags.
    dirs = sorted(p.name for p in (tmp_path / "ckpt").iterdir() if p.is_dir())
    assert dirs == ["step_000000003", "step_000000004"]
    fresh = make_engine(2, seed=9)
    assert mgr.resume(fresh) == ("step_000000004", {"round": 3})


def test_bad_inputs(tmp_path):
    eng = make_engine(0)
    with pytest.raises(TypeError, match="picklable"):
        save_checkpoint(eng, tmp_path, extra_state={"f": lambda: 0})
    with pytest.raises(ValueError, match="keep_last"):
        save_checkpoint(eng, tmp_path, keep_last=0)
    with pytest.raises(ValueError, match="invalid checkpoint tag"):
        save_checkpoint(eng, tmp_path, tag="../escape")
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        load_checkpoint(eng, tmp_path, tag="missing")


def test_resuming_with_another_world_size_is_refused(tmp_path):
    import json

    eng = make_engine(0)
    path = save_checkpoint(eng, tmp_path, tag="t")
    marker = path / "oat_checkpoint.json"
    meta = json.loads(marker.read_text())
    assert meta["world_size"] == 1
    marker.write_text(json.dumps({**meta, "world_size": 2}))  # as written by a 2-rank run
    with pytest.raises(ValueError, match="written by 2 ranks; resume it with 2 processes, not 1"):
        load_checkpoint(eng, tmp_path, tag="t")


@pytest.mark.parametrize("stage", [0, 2])
def test_a_resume_keeps_the_configured_adam_kernel(tmp_path, stage):
    """Optimizer.load_state_dict would otherwise bring back the kernel the checkpoint was written with."""
    old = make_engine(stage, adam_impl="for_loop")
    old.train_step(lm_loss, random_batch())
    save_checkpoint(old, tmp_path)
    new = make_engine(stage, adam_impl="fused")
    load_checkpoint(new, tmp_path)
    inner = getattr(new.optimizer, "optimizer", new.optimizer)
    assert all(g["fused"] is True and not g["foreach"] for g in inner.param_groups)
    new.train_step(lm_loss, random_batch())  # and the fused kernel steps
