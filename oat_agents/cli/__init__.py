"""Console scripts: ``oat-train``, ``oat-serve-oracle`` and ``oat-bench``.

* ``oat-train`` — online alignment from a :class:`~oat_agents.cli.train.TrainConfig` (``oat-train --help``).
* ``oat-serve-oracle`` — serve an oracle over HTTP with Mosec (implemented in :mod:`oat_env.cli_serve`,
  so research code that uses ``oat_env`` alone has it too).
* ``oat-bench <name> [options]`` — the benchmarks of :mod:`oat_agents.bench`.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS: dict[str, tuple[str, str]] = {
    "regret": (
        "oat_agents.bench.regret",
        "exploration strategies: cumulative/anytime regret vs oracle queries",
    ),
    "grader": ("oat_agents.bench.grader", "batched math grader vs a math_verify loop"),
    "oracle-server": ("oat_agents.bench.oracle_server", "served reward model: dynamic batching vs batch 1"),
    "learner": ("oat_agents.bench.learner", "DeepSpeed learner step vs bare PyTorch"),
    "dap-vs-trl": ("oat_agents.bench.dap_vs_trl", "online DPO vs TRL's OnlineDPOTrainer"),
    "grpo-vs-trl": ("oat_agents.bench.grpo_vs_trl", "Dr.GRPO vs TRL's GRPOTrainer"),
    "async": ("oat_agents.bench.asynchronous", "synchronous vs asynchronous loop: per 1k queries, vs max(gen, learn)"),
    "seeds": ("oat_agents.bench.seeds", "spread of a CPU learning recipe (demo, dr_grpo, ...) over seeds"),
}


def bench_usage() -> str:
    rows = "\n".join(f"  {name:<14} {about}" for name, (_, about) in BENCHMARKS.items())
    return f"usage: oat-bench <name> [options]   (oat-bench <name> --help for its options)\n\nbenchmarks:\n{rows}"


def bench(argv: list[str] | None = None) -> int:
    """``oat-bench <name> [options]``: run one benchmark's ``main`` with the remaining arguments."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(bench_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in BENCHMARKS:
        print(f"oat-bench: unknown benchmark {name!r}\n\n{bench_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[name][0])
    saved = sys.argv
    # The benchmarks parse sys.argv with argparse; the program name keeps their --help readable.
    sys.argv = [f"oat-bench {name}", *rest]
    try:
        module.main()
    finally:
        sys.argv = saved
    return 0


def bench_cli() -> None:
    """Console-script entry of ``oat-bench``."""
    sys.exit(bench())


def train_cli() -> None:
    """Console-script entry of ``oat-train``."""
    from oat_agents.cli.train import main

    main()


def serve_oracle_cli() -> None:
    """Console-script entry of ``oat-serve-oracle``."""
    from oat_env.cli_serve import main

    sys.exit(main())
