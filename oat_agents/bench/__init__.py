"""Benchmarks, run as ``oat-bench <name> [options]`` (``oat-bench --help`` lists them).

Each one measures a speed or sample-efficiency target against a baseline run in the same process
and prints the ratio, so numbers from different machines are comparable:

* :mod:`~oat_agents.bench.regret` — exploration strategies on a ladder of testbeds (``--testbed linear``: a
  linear contextual dueling bandit; ``arithmetic-wide``; ``demo``): cumulative and anytime regret vs oracle
  queries, with the papers' orderings as verdicts (table + plot).
* :mod:`~oat_agents.bench.grader` — the batched math grader vs a ``math_verify`` loop.
* :mod:`~oat_agents.bench.oracle_server` — a served reward model (dynamic batching) vs batch size 1
  and in-process.
* :mod:`~oat_agents.bench.learner` — the DeepSpeed learner step vs bare PyTorch.
* :mod:`~oat_agents.bench.dap_vs_trl` / :mod:`~oat_agents.bench.grpo_vs_trl` — online DPO and
  Dr.GRPO vs TRL's trainers (needs the ``bench`` extra).
"""
