r"""Regret benchmark: exploration strategies for online DPO on a ladder of testbeds, ``oat-bench regret``.

Every method of a testbed gets the same oracle-query budget, the same initial policy, the same prompt stream and
the same DPO learner; only how the dueled pair is chosen (and whether the actor is synced) differs. Methods
(:data:`METHODS`): ``passive`` (online DPO, two samples; the baseline of the ratios), ``random`` (a uniform pair of
the same ``num_samples`` candidates the explorers see: the "random is hard to beat" control, arXiv 2604.02766),
``offline`` (never sampled from the trained policy), ``ee_ts``, ``bai_ts`` (= SEA, arXiv 2411.01493), ``ids``
(information-directed sampling, after arXiv 2603.17378 and Russo & Van Roy), ``uncertainty``, ``sea_rollout``
(BAI-TS + confident model rollouts), ``apl`` and ``xpo``. Selector definitions:
:mod:`oat_agents.exploration.selectors`.

Testbeds (``--testbed``), from the setting of the theory to the demo:

* ``linear`` (:mod:`~oat_agents.bench.regret.linear`) — a contextual dueling bandit whose utility is linear in
  features the ERM and the softmax policy both see exactly; a run takes seconds.
* ``arithmetic-wide`` (:mod:`~oat_agents.bench.regret.arithmetic`) — online DPO of a tiny Llama on sums of
  1–2-digit terms (answers 0–198) with 8 candidates.
* ``demo`` (the default, for continuity) — the demo's single-digit sums with 4 candidates.

Reported against oracle queries, mean ± standard error over seeds (:mod:`~oat_agents.bench.regret.report`):
cumulative E&E regret ``Σ_t r*(x,y*) − ½(r*(x,a_t) + r*(x,b_t))`` of the dueled pairs, anytime (BAI) regret
``E_x[r*(x,y*) − r*(x, greedy π_t(x))]`` on held-out prompts (final, and averaged over the evaluations as a
learning-speed summary), held-out accuracy, "queries to reach passive's final anytime regret", explorer
diagnostics (ERM accuracy on labels it has not trained on yet, TS agreement, epistemic variance of the chosen pairs,
identical-pair rate, distinct candidates per prompt (linear only), model-data ratio, APL entropies), and a
verdict on each of the papers' orderings ("yes" only when the ±1 s.e. intervals are apart). Outputs in ``--out``:
``regret_table.md``, ``regret_results.json``, ``regret.png``; the arithmetic testbeds also write each run's
``logs/<method>_seed<k>/metrics.jsonl``.

Runs are independent processes (``--workers``, default 2, one torch thread each); a run's result depends only on
``(method, seed, config)``, not on the worker that ran it.

Budgets (2-core machine shared with other jobs; the README states the measured ones): ``linear`` default (10
methods × 10 seeds × 4,096 queries) a few minutes; ``arithmetic-wide`` default (10 methods × 5 seeds × 8,192
queries) and ``demo`` default (10 methods × 3 seeds × 32,768 queries) each about half an hour or more with 2
workers. ``--quick`` (2 seeds, a few methods, a small budget) runs in CI for each testbed in well under a minute.

    oat-bench regret [--testbed demo|arithmetic-wide|linear] [--quick] [--queries N] [--seeds 0 1 2]
                     [--methods ...] [--workers 2] [--erm-lambda L] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from oat_agents.bench.regret.arithmetic import ENV_ID, BenchConfig, run_one, warm_model
from oat_agents.bench.regret.config import METHODS, TESTBEDS, TWO_SAMPLE_METHODS, CommonConfig
from oat_agents.bench.regret.linear import LinearConfig
from oat_agents.bench.regret.report import (
    EXPLORER_METRICS,
    aggregate,
    explorer_summary,
    format_table,
    late_means,
    mean_se,
    orderings,
    plot,
)
from oat_agents.parallel import run_in_processes

__all__ = [
    "ENV_ID",
    "EXPLORER_METRICS",
    "METHODS",
    "TESTBEDS",
    "TWO_SAMPLE_METHODS",
    "BenchConfig",
    "CommonConfig",
    "LinearConfig",
    "aggregate",
    "config_for",
    "explorer_summary",
    "format_table",
    "late_means",
    "main",
    "mean_se",
    "orderings",
    "parse_args",
    "plot",
    "run_benchmark",
    "run_one",
    "warm_model",
]


def config_for(testbed: str, out: str = "runs/regret_bench", quick: bool = False) -> CommonConfig:
    """The documented default (or ``--quick``) configuration of ``testbed``."""
    if testbed == "linear":
        return LinearConfig.quick(out) if quick else LinearConfig(out=out)
    return BenchConfig.for_testbed(testbed, out, quick=quick)


def _job_fn(cfg: CommonConfig) -> Any:
    if cfg.testbed == "linear":
        from oat_agents.bench.regret.linear import run_job
    else:
        from oat_agents.bench.regret.arithmetic import run_job
    return run_job


def run_benchmark(cfg: CommonConfig) -> dict[str, Any]:
    """Run every method for every seed (``cfg.workers`` processes); write the table, JSON and plot to ``cfg.out``."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(method, seed) for seed in cfg.seeds for method in cfg.methods]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    start = time.perf_counter()
    print(
        f"testbed {cfg.testbed}: {len(jobs)} runs ({len(cfg.methods)} methods × {len(cfg.seeds)} seeds) of "
        f"{cfg.queries} queries on {min(cfg.workers, len(jobs))} worker process(es)",
        flush=True,
    )

    def report(method: str, seed: int, r: dict[str, Any]) -> None:
        results[(method, seed)] = r
        print(
            f"[{len(results)}/{len(jobs)}] seed {seed} {method:<12} cum regret {r['cumulative_regret'][-1]:8.1f}  "
            f"anytime {r['anytime_regret'][0]:.3f}→{r['anytime_regret'][-1]:.3f}  "
            f"acc {r['accuracy'][0]:.2f}→{r['accuracy'][-1]:.2f}  ({r['seconds']:.1f}s; "
            f"{time.perf_counter() - start:.0f}s elapsed)",
            flush=True,
        )

    fn = _job_fn(cfg)
    for (method, _, seed), r in run_in_processes(
        fn, [(m, cfg, s) for m, s in jobs], cfg.workers, cfg.threads
    ):
        report(method, seed, r)
    runs = {m: [results[(m, s)] for s in cfg.seeds] for m in cfg.methods}
    agg = aggregate(runs)
    table = format_table(agg, cfg.describe())
    total = time.perf_counter() - start
    (out / "regret_table.md").write_text(table + f"\n\nTotal wall time: {total:.0f}s\n", encoding="utf-8")
    (out / "regret_results.json").write_text(
        json.dumps({"config": asdict(cfg), "aggregate": agg, "runs": runs, "seconds": total}, indent=1),
        encoding="utf-8",
    )
    plot_path = plot(agg, out / "regret.png", cfg.plot_title())
    print(table)
    print(f"\ntotal {total:.0f}s; table {out / 'regret_table.md'}, plot {plot_path}")
    return {"aggregate": agg, "table": table, "plot": plot_path, "seconds": total}


def parse_args(argv: list[str] | None = None) -> CommonConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--testbed",
        default="demo",
        choices=TESTBEDS,
        help="linear: contextual dueling bandit (the theory's setting); arithmetic-wide: 1-2-digit "
        "sums, 8 candidates; demo (default): the demo's single-digit sums",
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI mode: 2 seeds, a few methods, a small budget"
    )
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--methods", nargs="+", default=None, choices=METHODS)
    parser.add_argument(
        "--num-samples", type=int, default=None, help="candidates per prompt for the explorers"
    )
    parser.add_argument(
        "--erm-lambda", type=float, default=None, help="linear only: the ERM's anchor strength λ"
    )
    parser.add_argument("--out", default="runs/regret_bench")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="parallel runs, one process and one torch thread each (default: 2, the CI machine's cores)",
    )
    args = parser.parse_args(argv)
    cfg = config_for(args.testbed, args.out, quick=args.quick)
    for name in ("queries", "seeds", "methods", "workers", "num_samples"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    if args.erm_lambda is not None:
        if not isinstance(cfg, LinearConfig):
            parser.error("--erm-lambda is an option of --testbed linear")
        cfg.erm_lambda = args.erm_lambda
    cfg.__post_init__()
    return cfg


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_benchmark(parse_args(argv))


if __name__ == "__main__":
    main()
