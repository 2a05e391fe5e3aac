"""Progress output: a live bar only on a terminal; in a file, one compact line per evaluation / interval."""

from __future__ import annotations

import io

import pytest

from oat_agents.cli.train import train
from oat_agents.loops.bookkeeping import LoopConfig
from oat_agents.progress import Progress, open_progress, update_progress
from oat_agents.recipes import demo_config


def test_line_mode_prints_on_evaluations_and_intervals_only():
    out = io.StringIO()
    progress = Progress(1000, unit="queries", desc="online", interval_s=3600, live=False, stream=out)
    evals: list[dict[str, float]] = []
    for queries in range(32, 1001, 32):
        if queries % 256 == 0:
            evals.append({"eval/accuracy": queries / 1000})
        update_progress(progress, queries, {"train/loss": 0.5}, evals, ("train/loss",))
    progress.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 3 + 1  # evaluations at 256, 512, 768, and the closing line
    assert lines[0].startswith("[online] 256/1000 queries (26%)") and "| loss 0.5 accuracy 0.256" in lines[0]
    assert "left" in lines[0] and lines[-1].startswith("[online] 992/1000 queries")


def test_line_mode_interval():
    out = io.StringIO()
    progress = Progress(10, unit="steps", interval_s=1e-9, live=False, stream=out)
    for step in range(1, 11):
        progress.update(step, {"sft_loss": 1.0 / step})
    assert len(out.getvalue().splitlines()) == 10


def test_open_progress_follows_the_config():
    assert open_progress(LoopConfig(progress=False), 0) is None
    progress = open_progress(LoopConfig(total_queries=64, progress=True, progress_interval_s=5.0), 0)
    assert progress.bar is None and progress.interval_s == 5.0  # pytest captures output: no terminal
    with pytest.raises(ValueError, match="progress_interval_s"):
        LoopConfig(progress_interval_s=0)


def test_a_run_piped_to_a_file_prints_compact_lines(tmp_path, capsys):
    config = demo_config(queries=256, seed=0, log_dir=str(tmp_path), warmup_steps=5, progress=True)
    config.loop.eval_query_interval, config.loop.tensorboard, config.plot = 128, False, False
    train(config)
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("[")]
    assert "\r" not in out.out + out.err
    assert lines[0].startswith("[warm-up] 5/5 steps (100%)") and "sft_loss" in lines[0]
    online = [line for line in lines if line.startswith("[online]")]
    # one line per evaluation: the start's (shown with the first round, at 32), 128 and 256, which is also the end
    assert len(online) == 3 and all(len(line) < 160 for line in online), online
    assert online[0].startswith("[online] 32/256") and online[-1].startswith("[online] 256/256")
    assert "accuracy" in online[-1]
