"""Regret benchmark of exploration strategies (passive/offline DPO, SEA EE-TS/BAI-TS, model rollout,
uncertainty, APL, XPO) on ``oat/Arithmetic-Duel-v0`` with the tiny CPU model.

Writes ``regret_table.md`` (cumulative E&E regret and anytime BAI regret vs oracle queries, mean ± s.e.
over seeds, and which of the paper's orderings hold), ``regret_results.json`` and ``regret.png`` to ``--out``.
The default budget (8 methods x 3 seeds x 32,768 queries, 2 worker processes) took 20 minutes on 2 CPU
cores; ``--quick`` takes about 15 seconds.

Run: ``python examples/regret_benchmark.py [--quick] [--out runs/regret_bench]``, the same as
``oat-bench regret`` (all options: ``--help``; the implementation is ``oat_agents/bench/regret.py``).
"""

from __future__ import annotations

from oat_agents.bench.regret import main

if __name__ == "__main__":
    main()
