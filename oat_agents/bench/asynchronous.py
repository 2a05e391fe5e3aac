"""Synchronous vs asynchronous loop (``--loop.asynchronous``): wall time per 1,000 queries, and how close the
asynchronous round comes to ``max(generate, learn)``.

Each workload is ``oat-train``'s tiny preset (``default_config``): ``dpo`` (online DPO, 32 duels per round, the
``demo`` recipe's settings) and ``dr_grpo`` (16 prompts × 8 samples per round, 2 epochs × 2 mini-batches), the
same untrained model (so every response has ``--max-new-tokens`` tokens), seed and budget in every mode, no
evaluation. Three modes, repeated ``--repeats`` times, interleaved
so that a slow moment of a shared machine hits every mode alike:

* ``sync``: the synchronous loop on all ``--threads`` torch threads: what a user gets without the flag;
* ``sync-split``: the synchronous loop on half the threads: its per-round ``actor/generate_s`` and
  ``train/step_s`` are generation alone and learning alone with the cores each side has in asynchronous mode;
* ``async``: ``--loop.asynchronous`` (the actor thread and the learner, half the threads each).

Per mode: the median over rounds (the first round of each run excluded: nothing overlaps it) of the round's wall
time ``misc/round_s`` (act or the wait for the actor, the oracle, learn and the weight sync), of generation and of
learning; seconds per 1,000 queries = median round / queries per round × 1000. Verdicts:

* ``async round / max(generate alone, learn alone)`` ≤ 1.15 (the issue's target: the loop approaches the longer
  of the two stages);
* ``sync-split round / (generate + learn)`` ≈ 1 (the synchronous loop costs their sum, plus oracle and sync);
* ``sync / async`` per 1,000 queries: the speed-up a user sees.

Budget: about 1-2 minutes per workload at the defaults on 2 cores.

    oat-bench async [--workload dpo dr_grpo] [--repeats 3] [--rounds 24] [--threads 2] [--hidden 64 --layers 2]
                    [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from oat_agents.bench.rounds import round_timings, steady_rounds

TARGET = 1.15
MODES = ("sync", "sync-split", "async")
WORKLOADS = ("dpo", "dr_grpo")


def workload_config(workload: str, args: argparse.Namespace, log_dir: str, asynchronous: bool) -> tuple[Any, int]:
    """``oat-train --algo <workload>``'s tiny preset with ``--max-new-tokens`` (no warm-up: the untrained model
    never stops early, so every response has that many tokens), ``--rounds`` rounds, no evaluation; and the
    queries per round."""
    from oat_agents.cli.algos import default_config

    config = default_config(workload)
    per_round = config.num_envs * (config.rl.num_samples if workload == "dr_grpo" else 1)
    loop = dataclasses.replace(config.loop, total_queries=args.rounds * per_round, eval_query_interval=0,
                               log_dir=log_dir, progress=False, tensorboard=False, asynchronous=asynchronous)
    lengths = {"max_new_tokens": args.max_new_tokens, "max_seq_length": 16 + args.max_new_tokens}
    sampling = ({"rl": dataclasses.replace(config.rl, **lengths)} if workload == "dr_grpo"
                else {"agent": dataclasses.replace(config.agent, **lengths)})
    return dataclasses.replace(
        config, loop=loop, warmup=dataclasses.replace(config.warmup, steps=0), tiny_hidden=args.hidden,
        tiny_layers=args.layers, plot=False, **sampling,
    ), per_round


def run_mode(workload: str, mode: str, args: argparse.Namespace, root: Path, repeat: int) -> dict[str, float]:
    """One run of ``workload`` in ``mode``: medians over its rounds (first excluded; asynchronous, the last too: it
    has no next round to generate beside its learning)."""
    from oat_agents.cli.train import train

    threads = args.threads if mode != "sync-split" else max(1, args.threads // 2)
    torch.set_num_threads(threads)
    log_dir = root / f"{workload}_{mode}_{repeat}"
    config, per_round = workload_config(workload, args, str(log_dir), asynchronous=mode == "async")
    start = time.perf_counter()
    train(config)
    wall = time.perf_counter() - start
    rows = steady_rounds(round_timings(str(log_dir / "metrics.jsonl")), asynchronous=mode == "async")
    torch.set_num_threads(args.threads)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    return {"round_s": median("round_s"), "generate_s": median("generate_s"), "learn_s": median("learn_s"),
            "per_1k_s": median("round_s") / per_round * 1000, "wall_s": wall}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}–{max(values):.3f}]"


def report(workload: str, runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Print the table of one workload and return its numbers (per repeat: the ratios within that repeat)."""
    print(f"\n{workload}: medians over rounds; median [min–max] over {len(runs['sync'])} repeats")
    print(f"  {'mode':<11} {'round s':>22} {'generate s':>22} {'learn s':>22} {'s / 1k queries':>22}")
    for mode in MODES:
        rs = runs[mode]
        print(f"  {mode:<11} {spread([r['round_s'] for r in rs]):>22} {spread([r['generate_s'] for r in rs]):>22} "
              f"{spread([r['learn_s'] for r in rs]):>22} {spread([r['per_1k_s'] for r in rs]):>22}")
    pairs = list(zip(runs["sync"], runs["sync-split"], runs["async"]))
    to_limit = [a["round_s"] / max(s["generate_s"], s["learn_s"]) for _, s, a in pairs]
    to_sum = [s["round_s"] / (s["generate_s"] + s["learn_s"]) for _, s, _ in pairs]
    speedup = [y["per_1k_s"] / a["per_1k_s"] for y, _, a in pairs]
    verdict = "✓" if statistics.median(to_limit) <= TARGET else "✗"
    print(f"  async round / max(generate, learn alone): {spread(to_limit)}  (target <= {TARGET}) {verdict}")
    print(f"  sync-split round / (generate + learn):    {spread(to_sum)}")
    print(f"  sync / async per 1k queries:              {spread(speedup)}")
    return {"runs": runs, "async_to_max": to_limit, "sync_to_sum": to_sum, "speedup": speedup}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode, interleaved (default 3)")
    parser.add_argument("--rounds", type=int, default=24, help="rounds per run (the first is not counted)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the synchronous loop (all cores)")
    parser.add_argument("--hidden", type=int, default=64, help="tiny Llama width")
    parser.add_argument("--layers", type=int, default=2, help="tiny Llama layers")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="tokens per response (all generated)")
    parser.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.rounds < 3 or args.threads < 1:
        parser.error("--repeats >= 1, --rounds >= 3 and --threads >= 1")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="oat-bench-async-") as tmp:
        for workload in args.workload:
            runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
            for repeat in range(args.repeats):
                for mode in MODES:
                    runs[mode].append(run_mode(workload, mode, args, Path(tmp), repeat))
                    r = runs[mode][-1]
                    print(f"{workload} {mode:<10} repeat {repeat}: round {r['round_s']:.3f}s generate "
                          f"{r['generate_s']:.3f}s learn {r['learn_s']:.3f}s ({r['wall_s']:.0f}s)", flush=True)
            results[workload] = report(workload, runs)
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
