"""Spread of a CPU learning recipe over seeds: the numbers the README and the slow tests quote.

Runs every seed of one recipe of :mod:`oat_agents.recipes` (``demo``, ``dr_grpo``, ``multiturn``, ``sea``)
on parallel worker processes (one torch thread each) and prints one line per finished seed, then the
distribution of the warm start, the final value (mean of the last two evaluations) and the gain: mean ±
standard deviation, min–max, and how many seeds gained at least 0.10. Writes ``seeds_<recipe>.json`` to
``--out``.

A seed takes about 1-1.5 minutes of one core (``demo`` ~80 s, ``sea`` ~120 s); 10 seeds on 2 workers take
6-10 minutes.

    oat-bench seeds --recipe demo [--seeds 0 1 2 3 4 5 6 7 8 9] [--workers 2] [--threads 1] [--out DIR]
                    [--asynchronous]

``--asynchronous`` runs the recipe with ``LoopConfig.asynchronous`` (``demo`` and ``dr_grpo``; the actor one round
ahead of the learner) and writes ``seeds_<recipe>_async.json``: the learning effect of asynchronous mode beside
the synchronous numbers of :data:`~oat_agents.recipes.MEASURED`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from oat_agents.recipes import ASYNC_RECIPES, RECIPES, run_seeds


def describe(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max."""
    x = np.asarray(values, dtype=np.float64)
    return {"mean": float(x.mean()), "sd": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
            "min": float(x.min()), "max": float(x.max())}


def summarize(results: list[dict[str, Any]], min_gain: float = 0.10) -> dict[str, Any]:
    """The distribution over seeds of ``start``, ``final``, ``gain`` (and of every extra number)."""
    out: dict[str, Any] = {key: describe([r[key] for r in results]) for key in ("start", "final", "gain")}
    for key in results[0]["extra"]:
        out[key] = describe([r["extra"][key] for r in results])
    out["seeds"] = [r["seed"] for r in results]
    out["improved"] = sum(r["gain"] >= min_gain for r in results)
    out["min_gain"] = min_gain
    return out


def format_line(r: dict[str, Any]) -> str:
    extras = "  ".join(f"{k} {v:.3g}" for k, v in r["extra"].items())
    return (f"seed {r['seed']:>3}  {r['metric']} {r['start']:.3f} -> {r['final']:.3f} ({r['gain']:+.3f})  "
            f"curve {[round(v, 2) for v in r['values']]}  {extras}  ({r['seconds']:.0f}s)")


def format_summary(recipe: str, summary: dict[str, Any]) -> str:
    rows = [f"{recipe}: {len(summary['seeds'])} seeds {summary['seeds']}"]
    for key, stats in summary.items():
        if isinstance(stats, dict):
            rows.append(f"  {key:<22} {stats['mean']:.3f} ± {stats['sd']:.3f} (sd)   range {stats['min']:.3f} – "
                        f"{stats['max']:.3f}")
    rows.append(f"  seeds gaining >= {summary['min_gain']:.2f}: {summary['improved']}/{len(summary['seeds'])}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the seeds, print and write the distribution; returns ``{"summary", "runs", "seconds"}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", choices=RECIPES, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--workers", type=int, default=2, help="parallel runs (default 2, the CI machine's cores)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--out", default="runs/seeds")
    parser.add_argument("--asynchronous", action="store_true",
                        help=f"run with --loop.asynchronous (recipes {', '.join(ASYNC_RECIPES)})")
    args = parser.parse_args(argv)
    if args.asynchronous and args.recipe not in ASYNC_RECIPES:
        parser.error(f"--asynchronous: recipe {args.recipe} has no asynchronous variant; choose from {ASYNC_RECIPES}")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct, got {args.seeds}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    name = args.recipe + ("_async" if args.asynchronous else "")
    print(f"{name}: {len(args.seeds)} seeds on {min(args.workers, len(args.seeds))} worker(s), "
          f"{args.threads} thread(s) each", flush=True)
    results = run_seeds(args.recipe, args.seeds, str(out / "logs"), args.workers, args.threads,
                        on_result=lambda r: print(format_line(r), flush=True), asynchronous=args.asynchronous)
    summary = summarize(results)
    seconds = time.perf_counter() - start
    print(format_summary(name, summary))
    print(f"total {seconds:.0f}s")
    path = out / f"seeds_{name}.json"
    path.write_text(json.dumps({"recipe": args.recipe, "asynchronous": args.asynchronous, "threads": args.threads,
                                "summary": summary,
                                "runs": results, "seconds": seconds}, indent=1), encoding="utf-8")
    print(f"wrote {path}")
    return {"summary": summary, "runs": results, "seconds": seconds}


if __name__ == "__main__":
    main()
