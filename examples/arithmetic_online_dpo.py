"""The CPU demo (`make demo`): online DPO of a tiny Llama against `oat/Arithmetic-Duel-v0`.

1. A small Llama (2 layers, width 64) with a per-character tokenizer is built from config (no download).
2. It is warmed up by a few seconds of supervised training on procedurally generated single-digit
   additions (``"7+8="`` → ``"15"``), leaving a partly right policy.
3. It is trained *online*: every round it samples two answers for each of ``num_envs`` prompts, the
   env's synthetic oracle says which is closer to the truth (one batched call per round), and the
   DeepSpeed learner takes a DPO step on those pairs; the new weights go back to the sampler.

It shows progress (a live bar on a terminal, one line per evaluation in a log file), logs to TensorBoard
(``runs/demo``), saves learning curves (``runs/demo/curves.png``: accuracy, win rate vs reference, anytime and
cumulative regret against oracle queries) and ends with a before/after table and this run's numbers next to
the range measured over seeds (``oat_agents.recipes.MEASURED``, written by ``oat-bench seeds --recipe demo``).
The settings are ``oat_agents.recipes.demo_config``, shared with the slow test and ``oat-bench seeds``.

Run: ``python examples/arithmetic_online_dpo.py [--queries 32768] [--seed 0] [--log-dir runs/demo]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from oat_agents.cli.train import summary_table, train
from oat_agents.recipes import compare_with_measured, demo_config

__all__ = ["demo_config"]  # examples/sea_arithmetic.py builds on the demo's settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=32768, help="oracle query budget of the online phase")
    parser.add_argument("--warmup-steps", type=int, default=100, help="supervised warm-up steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-dir", default="runs/demo")
    args = parser.parse_args()
    start = time.perf_counter()
    summary = train(demo_config(args.queries, args.seed, args.log_dir, args.warmup_steps))
    print(f"\nwarm-up: {summary.warmup['warmup/seconds']:.0f}s, final SFT loss {summary.warmup['warmup/loss']:.3f}")
    print(summary_table(summary))
    accuracy = [e["eval/accuracy"] for e in summary.result.evals]
    if args.queries == 32768 and args.warmup_steps == 100:
        print("\n" + compare_with_measured("demo", accuracy[0], float(np.mean(accuracy[-2:]))))
    else:
        print("\n(the measured range in the README is for the default --queries 32768 --warmup-steps 100)")
    print(f"\ntotal time {time.perf_counter() - start:.0f}s; logs in {summary.log_dir} "
          f"(tensorboard --logdir {summary.log_dir}); curves: {summary.plot_path}")


if __name__ == "__main__":
    main()
