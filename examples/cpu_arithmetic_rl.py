"""RL with verifiable rewards on CPU: Dr.GRPO on `oat/Arithmetic-v0`, and turn-level REINFORCE on
`oat/MathMultiTurn-v0`, both from a briefly SFT-warmed tiny character-level Llama.

Single-turn (``--mode single``):
1. A tiny Llama (hidden 64, 2 layers) is supervised for a few seconds on single-digit additions
   (``"7+5="`` → ``"12"``), leaving a weak policy (greedy held-out accuracy 0.21-0.58 over seeds 0-9).
2. Every round the env serves 16 prompts, each 8 times in a row; the policy samples the 8 group
   members per prompt, the verifier grades all 128 in ONE batched step, and the learner takes Dr.GRPO
   steps (group-mean baseline, no std division, constant normaliser; 2 epochs x 2 mini-batches).
3. Held-out greedy accuracy (the problems never trained on) is evaluated along the way.

Multi-turn (``--mode multi``): 32 sub-envs run episodes of up to 3 attempts ("wrong" feedback after a
wrong answer); episodes end at different steps; finished turns are trained on with discounted per-turn
returns (γ = 0.9) minus the batch mean. Reported: the training episodes' success rate within
``max_turns`` and greedy held-out success.

Curves are saved as PNG (``<log-dir>/single_turn.png``, ``<log-dir>/multi_turn.png``) with
``oat_agents.cli.plotting``; metrics go to TensorBoard and ``metrics.jsonl`` under ``--log-dir``.
The recipes live in ``oat_agents.recipes`` (``dr_grpo`` and ``multiturn``): the slow tests
(``tests/test_learning.py``) and ``oat-bench seeds`` run exactly these.

Run: ``python examples/cpu_arithmetic_rl.py [--mode both] [--seed 0] [--log-dir runs/cpu_rl]``
(about a minute on an idle CPU core).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from oat_agents.cli.plotting import plot_learning_curves
from oat_agents.recipes import run_multi_turn, run_single_turn, training_curve


def plot_training(log_dir: str, key: str, label: str, path: Path) -> None:
    """A one-panel PNG of a training metric (moving average over 8 logged points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q, v = training_curve(log_dir, key)
    smooth = np.convolve(v, np.ones(8) / 8, mode="valid") if len(v) >= 8 else np.asarray(v)
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    ax.plot(q, v, alpha=0.3)
    ax.plot(q[len(q) - len(smooth):], smooth)
    ax.set_xlabel("oracle queries")
    ax.set_title(label)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("single", "multi", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-dir", default="runs/cpu_rl")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.log_dir)
    if args.mode in ("single", "both"):
        start = time.perf_counter()
        log = str(out / "single_turn")
        result = run_single_turn(args.seed, log, progress=True)
        png = plot_learning_curves(result.evals, out / "single_turn.png", title="Dr.GRPO on oat/Arithmetic-v0")
        plot_training(log, "actor/accuracy", "sampled training accuracy", out / "single_turn_train.png")
        acc = [e["eval/accuracy"] for e in result.evals]
        print(f"\nDr.GRPO: held-out greedy accuracy {acc[0]:.2f} -> {acc[-1]:.2f} over {result.queries} queries "
              f"({time.perf_counter() - start:.0f}s); curves: {png}")
    if args.mode in ("multi", "both"):
        start = time.perf_counter()
        log = str(out / "multi_turn")
        result = run_multi_turn(args.seed, log, progress=True)
        plot_training(log, "actor/episode_success", "training success within max_turns", out / "multi_turn.png")
        _, success = training_curve(log, "actor/episode_success")
        k = max(len(success) // 4, 1)
        ev = [e["eval/success_rate"] for e in result.evals]
        print(f"\nmulti-turn: training success within 3 turns {np.mean(success[:k]):.2f} -> {np.mean(success[-k:]):.2f}; "
              f"held-out greedy success {ev[0]:.2f} -> {ev[-1]:.2f} ({time.perf_counter() - start:.0f}s); "
              f"curve: {out / 'multi_turn.png'}")


if __name__ == "__main__":
    main()
