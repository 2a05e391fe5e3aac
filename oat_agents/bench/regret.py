r"""Regret benchmark: exploration strategies for online DPO on ``oat/Arithmetic-Duel-v0`` (tiny CPU model).

Every method gets the same oracle-query budget, the same SFT-warmed tiny Llama (one warm-up per seed,
shared by all methods), the same prompt stream (env seed) and the same DPO learner; only how pairs are
chosen (and whether the actor is synced) differs:

================  ======================================================================================
``passive``       online DPO: two random samples per prompt (baseline; the ratios are against it)
``offline``       offline DPO: the same, but the actor is never synced (``sync_params_every=0``)
``ee_ts``         SEA agent, E&E double Thompson sampling from the ERM
``bai_ts``        SEA agent, BAI Thompson sampling (first arm TS, second arm most uncertain duel) = SEA
``sea_rollout``   ``bai_ts`` + Dyna model rollouts: as many ERM-labelled pairs as oracle pairs per round
                  (rollout pairs are oat's confident ones: a random member's best vs worst candidate)
``uncertainty``   SEA agent, the pair with the largest epistemic variance of its reward difference
``apl``           APL: the highest-entropy ``num_envs`` prompts of a pool of ``apl_pool_factor × num_envs``,
                  then the pair with the largest DPO implicit-reward margin
``xpo``           XPO: online DPO on (policy sample, reference sample) duels + the α·log π(ỹ_ref) optimism
                  term on the dueled reference sample
================  ======================================================================================

The task is the demo's (``make demo``): single-digit sums, 33 held-out problems never drawn in training,
a 2-layer width-64 Llama, DPO β = 0.1 at lr 1e-4 with 2 passes over each round's 32 pairs. This is where
passive online DPO measurably learns on CPU within the budget (with 2-digit sums or a few thousand queries
it does not move, and then there is nothing for exploration to speed up). The explorers sample 4
candidates per prompt; passive and offline need only 2 (XPO samples one from the policy, one from the
reference).

Reported against oracle queries, mean ± standard error over seeds: cumulative E&E regret
``Σ_t r*(x,y*) − ½(r*(x,a_t) + r*(x,b_t))`` of the dueled pairs (DESIGN.md §5), anytime (BAI) regret
``E_x[r*(x,y*) − r*(x, greedy π_t(x))]`` on the held-out prompts (final, and averaged over the evaluations
as a learning-speed summary), held-out accuracy, "queries to reach passive's final anytime regret", the
explorer diagnostics (``eval/rm_accuracy`` of the ERM on labels it has not trained on yet, TS agreement,
epistemic variance of the chosen pairs, model-data ratio, APL entropies), and a verdict on each of the
paper's orderings. Outputs in ``--out``: ``regret_table.md``, ``regret_results.json``, ``regret.png`` (two
panels) and each run's ``logs/<method>_seed<k>/metrics.jsonl``.

Runs are independent processes (``--workers``, default 2, one torch thread each); a run's result depends
only on ``(method, seed, config)``, not on the worker that ran it.

Budget: the default (8 methods × 3 seeds × 32,768 queries = 24 runs, 2 workers) took 1,211 s (20 min) on
the 2-core machine, with other tests sharing the cores: within the 30-minute bound. A passive run takes
about a minute, an explorer run 1.5-2.5 minutes. ``--quick`` (2 seeds, passive/offline/bai_ts, 256
queries, a width-32 model) takes about 15 s and exists for CI.

    oat-bench regret [--quick] [--queries 32768] [--seeds 0 1 2] [--methods ...] [--workers 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oat_agents.parallel import run_in_processes
from oat_agents.recipes import ARITHMETIC

METHODS: tuple[str, ...] = ("passive", "offline", "ee_ts", "bai_ts", "sea_rollout", "uncertainty", "apl", "xpo")
QUICK_METHODS: tuple[str, ...] = ("passive", "offline", "bai_ts")
ENV_ID = "oat/Arithmetic-Duel-v0"
# The demo's task (oat_agents.recipes): single-digit sums with 40 % of the 100 problems held out. Online DPO
# measurably learns it on CPU within ~16k queries; on 2-digit sums it does not move at benchmark budgets,
# which would leave nothing to compare.
ENV_KWARGS = ARITHMETIC
# Methods whose pair is two random samples need no more candidates than that.
TWO_SAMPLE_METHODS = ("passive", "offline", "xpo")


@dataclass
class BenchConfig:
    """Options of the benchmark (CLI flags of the same names)."""

    queries: int = 32768
    env_kwargs: dict[str, Any] = field(default_factory=lambda: dict(ENV_KWARGS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    num_envs: int = 32
    num_samples: int = 4
    warmup_steps: int = 100
    hidden: int = 64
    layers: int = 2
    learning_rate: float = 1e-4
    learn_epochs: int = 2
    beta: float = 0.1
    sft_weight: float = 0.0
    warmup_batch_size: int = 32
    eval_every: int = 2048
    num_eval_prompts: int = 33  # all the held-out single-digit problems
    rollout_fraction: float = 0.5
    apl_pool_factor: int = 4
    xpo_alpha: float = 1e-3
    out: str = "runs/regret_bench"
    threads: int = 1
    workers: int = 2

    @classmethod
    def quick(cls, out: str) -> BenchConfig:
        return cls(queries=256, seeds=[0, 1], methods=list(QUICK_METHODS), num_envs=16, warmup_steps=50, hidden=32,
                   eval_every=128, num_eval_prompts=20, out=out)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
        if self.queries < self.num_envs:
            raise ValueError(f"queries ({self.queries}) must be at least num_envs ({self.num_envs})")
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.apl_pool_factor < 1:
            raise ValueError(f"apl_pool_factor must be >= 1, got {self.apl_pool_factor}")


def _make_env(cfg: BenchConfig) -> Any:
    import gymnasium as gym

    import oat_env  # noqa: F401  (registers the env ids)

    return gym.make_vec(ENV_ID, num_envs=cfg.num_envs, **cfg.env_kwargs)


def warm_model(cfg: BenchConfig, seed: int) -> tuple[Any, Any]:
    """The seed's SFT-warmed tiny Llama and its tokenizer (every method starts from a copy)."""
    from oat_agents.models import CharTokenizer, build_tiny_llama
    from oat_agents.tiny import WarmupConfig, sft_warmup

    env = _make_env(cfg)
    tokenizer = CharTokenizer()
    heads = 4 if cfg.hidden >= 128 else 2  # head width 32 (16 for the quick model)
    model = build_tiny_llama(len(tokenizer), hidden=cfg.hidden, layers=cfg.layers, heads=heads, seed=seed)
    sft_warmup(model, tokenizer, env.unwrapped.task.source,
               WarmupConfig(steps=cfg.warmup_steps, batch_size=cfg.warmup_batch_size, learning_rate=3e-3, seed=seed))
    env.close()
    return model, tokenizer


def build_agent(method: str, cfg: BenchConfig, seed: int, model: Any, tokenizer: Any, env: Any) -> Any:
    """The agent of ``method`` on fresh copies of the warmed model (policy, learner, reference)."""
    from oat_agents.agents.apl import APLAgent, APLAgentConfig
    from oat_agents.agents.dap import DAPAgent, DAPAgentConfig
    from oat_agents.agents.sea import SEAAgent, SEAAgentConfig, training_prompt_sampler
    from oat_agents.agents.xpo import XPOAgent, XPOAgentConfig
    from oat_agents.algorithms.dap import DAPConfig
    from oat_agents.exploration.explorer import Explorer, ExplorerConfig
    from oat_agents.exploration.features import policy_hidden_state_features
    from oat_agents.learners import LearnerConfig, LearnerEngine
    from oat_agents.policies.hf import HFPolicy

    trainable = copy.deepcopy(model)
    learner = LearnerEngine(
        trainable,
        LearnerConfig(zero_stage=0, learning_rate=cfg.learning_rate, micro_batch_size=32, max_grad_norm=1.0, seed=seed),
        ref_model=copy.deepcopy(model),
    )
    policy = HFPolicy(copy.deepcopy(model), tokenizer, device="cpu")
    num_samples = 2 if method in TWO_SAMPLE_METHODS else cfg.num_samples
    common = dict(num_samples=num_samples, temperature=1.0, max_new_tokens=4, max_seq_length=16, seed=seed,
                  learn_epochs=cfg.learn_epochs, dap=DAPConfig(loss_type="dpo", beta=cfg.beta, sft_weight=cfg.sft_weight))
    if method in ("passive", "offline"):
        return DAPAgent(policy, learner, DAPAgentConfig(**common))
    if method == "apl":
        pool = cfg.apl_pool_factor * cfg.num_envs if cfg.apl_pool_factor > 1 else 0
        return APLAgent(policy, learner, APLAgentConfig(prompt_pool_size=pool, **common))
    if method == "xpo":
        ref_policy = HFPolicy(copy.deepcopy(model), tokenizer, device="cpu")
        return XPOAgent(policy, learner, XPOAgentConfig(xpo_alpha=cfg.xpo_alpha, **common), ref_policy=ref_policy)
    selector = "bai_ts" if method == "sea_rollout" else method
    features = policy_hidden_state_features(copy.deepcopy(model), tokenizer, pooling="mean", cache_size=4096)
    explorer = Explorer(features, ExplorerConfig(method=selector, seed=seed))
    rollout = cfg.rollout_fraction if method == "sea_rollout" else 0.0
    return SEAAgent(policy, learner, SEAAgentConfig(rollout_fraction=rollout, rollout_min_queries=4 * cfg.num_envs,
                                                    **common),
                    explorer=explorer, rollout_prompts=training_prompt_sampler(env))


def run_one(method: str, cfg: BenchConfig, seed: int, model: Any, tokenizer: Any, log_root: Path) -> dict[str, Any]:
    """One run; returns its curves: eval points and cumulative regret after every round."""
    from oat_agents.loop import LoopConfig, run_online

    run_dir = log_root / f"{method}_seed{seed}"
    # A rerun into the same --out starts the run's logs afresh (the logger appends to metrics.jsonl).
    shutil.rmtree(run_dir, ignore_errors=True)
    env = _make_env(cfg)
    agent = build_agent(method, cfg, seed, model, tokenizer, env)
    loop = LoopConfig(
        total_queries=cfg.queries, sync_params_every=0 if method == "offline" else 1,
        eval_query_interval=cfg.eval_every, num_eval_prompts=cfg.num_eval_prompts, eval_seed=1234,
        log_dir=str(run_dir), seed=seed, progress=False, tensorboard=False,
    )
    start = time.perf_counter()
    result = run_online(env, agent, loop)
    env.close()
    rq, rr = result.regret_history
    model_pairs = getattr(agent, "model_pairs_total", 0)
    return {
        **explorer_summary(Path(loop.log_dir) / "metrics.jsonl"),
        "eval_queries": [int(e["misc/queries"]) for e in result.evals],
        "anytime_regret": [float(e["eval/anytime_regret"]) for e in result.evals],
        "accuracy": [float(e["eval/accuracy"]) for e in result.evals],
        "regret_queries": [int(q) for q in rq],
        "cumulative_regret": [float(r) for r in rr],
        "queries": int(result.queries),
        "model_pairs": int(model_pairs),
        "seconds": time.perf_counter() - start,
    }


# Explorer diagnostics summarised per run: mean over the last quarter of the rounds that logged them.
EXPLORER_METRICS = ("eval/rm_accuracy", "explorer/ts_agreement", "explorer/pair_epistemic_var",
                    "explorer/model_data_ratio", "explorer/apl_entropy", "explorer/apl_pool_entropy")


def explorer_summary(metrics_jsonl: Path) -> dict[str, float]:
    """``{metric: late mean}`` of :data:`EXPLORER_METRICS` from a run's ``metrics.jsonl`` (absent ones left out)."""
    rows = [json.loads(line) for line in metrics_jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = {}
    for key in EXPLORER_METRICS:
        values = [r[key] for r in rows if key in r]
        if values:
            out[key] = float(np.mean(values[-max(1, len(values) // 4):]))
    return out


def mean_se(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error (sample std / sqrt(n); 0 for one seed) over axis 0."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    se = values.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.zeros(values.shape[1:])
    return values.mean(axis=0), se


def aggregate(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per method: mean ± s.e. curves over seeds, final values and queries-to-match-passive."""
    out: dict[str, dict[str, Any]] = {}
    for method, per_seed in runs.items():
        agg: dict[str, Any] = {"eval_queries": per_seed[0]["eval_queries"], "regret_queries": per_seed[0]["regret_queries"]}
        for key in ("anytime_regret", "accuracy", "cumulative_regret"):
            mean, se = mean_se(np.array([r[key] for r in per_seed]))
            agg[key] = mean.tolist()
            agg[key + "_se"] = se.tolist()
        auc_mean, auc_se = mean_se(np.array([[_anytime_auc(r["anytime_regret"])] for r in per_seed]))
        agg["anytime_auc"], agg["anytime_auc_se"] = float(auc_mean[0]), float(auc_se[0])
        agg["seconds"] = float(np.mean([r["seconds"] for r in per_seed]))
        for key in EXPLORER_METRICS:
            if all(key in r for r in per_seed):
                agg[key] = float(np.mean([r[key] for r in per_seed]))
        agg["model_pairs"] = float(np.mean([r["model_pairs"] for r in per_seed]))
        out[method] = agg
    if "passive" in out:
        # Sample efficiency: the first evaluation (after the initial one) at which a method's mean anytime
        # regret is at most passive online DPO's final value. Undefined when passive did not improve.
        passive = out["passive"]["anytime_regret"]
        target = passive[-1] if passive[-1] < passive[0] else None
        for agg in out.values():
            hits = [] if target is None else [
                q for q, r in zip(agg["eval_queries"][1:], agg["anytime_regret"][1:]) if r <= target + 1e-12
            ]
            agg["queries_to_passive_final"] = hits[0] if hits else None
    return out


def _anytime_auc(per_seed_curve: list[float]) -> float:
    """Mean anytime regret over the evaluations after the initial one: lower means it learned sooner."""
    return float(np.mean(per_seed_curve[1:])) if len(per_seed_curve) > 1 else float(per_seed_curve[0])


def format_table(agg: dict[str, dict[str, Any]], cfg: BenchConfig) -> str:
    """Markdown tables: final values and sample efficiency (mean ± s.e.; ratios against passive online DPO),
    then the explorer diagnostics of the methods that log them."""
    lines = [
        f"Regret benchmark on {ENV_ID} {json.dumps(cfg.env_kwargs)}: {cfg.queries} oracle queries, "
        f"seeds {cfg.seeds}, {cfg.num_envs} prompts per round ({cfg.num_samples} samples each for the "
        f"explorers, 2 for {', '.join(TWO_SAMPLE_METHODS)}).",
        "",
        "| method | cumulative regret | ratio vs passive | anytime regret (final) | ratio vs passive "
        "| anytime regret (mean over evals) | accuracy (initial → final) "
        "| queries to passive's final anytime regret | model pairs | s/run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = agg.get("passive")
    for method, a in agg.items():
        cum, cum_se = a["cumulative_regret"][-1], a["cumulative_regret_se"][-1]
        any_, any_se = a["anytime_regret"][-1], a["anytime_regret_se"][-1]
        cum_ratio = f"{cum / base['cumulative_regret'][-1]:.3f}" if base else "-"
        any_ratio = f"{any_ / base['anytime_regret'][-1]:.3f}" if base and base["anytime_regret"][-1] > 0 else "-"
        to_target = a.get("queries_to_passive_final")
        lines.append(
            f"| {method} | {cum:.1f} ± {cum_se:.1f} | {cum_ratio} | {any_:.4f} ± {any_se:.4f} | {any_ratio} | "
            f"{a['anytime_auc']:.4f} ± {a['anytime_auc_se']:.4f} | "
            f"{a['accuracy'][0]:.3f} → {a['accuracy'][-1]:.3f} ± {a['accuracy_se'][-1]:.3f} | "
            f"{'not reached' if to_target is None else to_target} | {a['model_pairs']:.0f} | {a['seconds']:.0f} |"
        )
    diag = [(m, a) for m, a in agg.items() if any(k in a for k in EXPLORER_METRICS)]
    if diag:
        lines += ["", "Explorer diagnostics (mean of each run's last quarter of rounds, averaged over seeds):", "",
                  "| method | " + " | ".join(EXPLORER_METRICS) + " |", "|---" * (len(EXPLORER_METRICS) + 1) + "|"]
        for method, a in diag:
            lines.append(f"| {method} | " + " | ".join(f"{a[k]:.4g}" if k in a else "-" for k in EXPLORER_METRICS) + " |")
    verdicts = orderings(agg)
    if verdicts:
        lines += ["", "The paper's orderings (arXiv 2411.01493), as measured here:", ""] + [f"- {v}" for v in verdicts]
    return "\n".join(lines)


def _lower(a: str, b: str, values: dict[str, tuple[float, float]]) -> str:
    """Verdict on "``a`` is lower than ``b``" for a lower-is-better ``(mean, s.e.)`` summary, with the numbers."""
    (ma, sa), (mb, sb) = values[a], values[b]
    numbers = f"{a} {ma:.4g} ± {sa:.2g} vs {b} {mb:.4g} ± {sb:.2g}"
    if ma + sa < mb - sb:
        return f"yes (±1 s.e. apart): {numbers}"
    if mb + sb < ma - sa:
        return f"no, the reverse holds (±1 s.e. apart): {numbers}"
    # Overlapping intervals say nothing either way: never "yes" on a difference the seeds cannot resolve.
    return f"no ordering (±1 s.e. overlap): {numbers}"


def orderings(agg: dict[str, dict[str, Any]]) -> list[str]:
    """Whether the paper's headline orderings hold in this run (those whose methods were run).

    "Learns faster" compares the mean anytime regret over evaluations (the area under the BAI curve);
    E&E compares final cumulative regret.
    """
    auc = {m: (a["anytime_auc"], a["anytime_auc_se"]) for m, a in agg.items()}
    cum = {m: (a["cumulative_regret"][-1], a["cumulative_regret_se"][-1]) for m, a in agg.items()}
    checks = [
        ("SEA (bai_ts) learns faster than passive online DPO", "bai_ts", "passive", auc),
        ("SEA (bai_ts) learns faster than offline DPO", "bai_ts", "offline", auc),
        ("SEA with model rollout learns faster than passive online DPO", "sea_rollout", "passive", auc),
        ("online (passive) DPO learns faster than offline DPO", "passive", "offline", auc),
        ("E&E-TS has lower cumulative regret than BAI-TS", "ee_ts", "bai_ts", cum),
        ("E&E-TS has lower cumulative regret than uncertainty sampling", "ee_ts", "uncertainty", cum),
        ("BAI-TS has lower anytime regret than E&E-TS", "bai_ts", "ee_ts", auc),
    ]
    return [f"{claim}: {_lower(a, b, values)}" for claim, a, b, values in checks if a in agg and b in agg]


def plot(agg: dict[str, dict[str, Any]], path: Path, cfg: BenchConfig) -> Path:
    """Two panels vs oracle queries: cumulative regret and anytime regret (mean ± s.e. bands)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for method, a in agg.items():
        for ax, xkey, key in ((axes[0], "regret_queries", "cumulative_regret"), (axes[1], "eval_queries", "anytime_regret")):
            x, y, se = np.array(a[xkey]), np.array(a[key]), np.array(a[key + "_se"])
            (line,) = ax.plot(x, y, label=method, linestyle="--" if method in ("passive", "offline") else "-")
            ax.fill_between(x, y - se, y + se, color=line.get_color(), alpha=0.2)
    axes[0].set(title="E&E: cumulative regret", xlabel="oracle queries", ylabel="Σ regret of dueled pairs")
    axes[1].set(title="BAI: anytime regret (held-out, greedy)", xlabel="oracle queries",
                ylabel="E[r*(x,y*) − r*(x,π(x))]")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"{ENV_ID}, tiny Llama, {len(cfg.seeds)} seeds (mean ± s.e.)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


_WARM: dict[int, tuple[Any, Any]] = {}  # per process: the seed's warmed model, reused by its methods


def run_job(method: str, cfg: BenchConfig, seed: int) -> dict[str, Any]:
    """One (method, seed) run in this process; the warm-up is shared by the seed's runs in this process.

    Every input of a run is derived from ``(method, seed, cfg)``, so the result does not depend on which
    worker runs it or in what order.
    """
    if seed not in _WARM:
        _WARM.clear()
        _WARM[seed] = warm_model(cfg, seed)
    model, tokenizer = _WARM[seed]
    return run_one(method, cfg, seed, model, tokenizer, Path(cfg.out) / "logs")


def run_benchmark(cfg: BenchConfig) -> dict[str, Any]:
    """Run every method for every seed (``cfg.workers`` processes); write the table, JSON and plot to ``cfg.out``."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(method, seed) for seed in cfg.seeds for method in cfg.methods]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    start = time.perf_counter()
    print(f"{len(jobs)} runs ({len(cfg.methods)} methods × {len(cfg.seeds)} seeds) of {cfg.queries} queries on "
          f"{min(cfg.workers, len(jobs))} worker process(es)", flush=True)

    def report(method: str, seed: int, r: dict[str, Any]) -> None:
        results[(method, seed)] = r
        print(f"[{len(results)}/{len(jobs)}] seed {seed} {method:<12} cum regret {r['cumulative_regret'][-1]:8.1f}  "
              f"anytime {r['anytime_regret'][0]:.3f}→{r['anytime_regret'][-1]:.3f}  "
              f"acc {r['accuracy'][0]:.2f}→{r['accuracy'][-1]:.2f}  ({r['seconds']:.0f}s; "
              f"{time.perf_counter() - start:.0f}s elapsed)", flush=True)

    for (method, _, seed), r in run_in_processes(run_job, [(m, cfg, s) for m, s in jobs], cfg.workers, cfg.threads):
        report(method, seed, r)
    runs = {m: [results[(m, s)] for s in cfg.seeds] for m in cfg.methods}
    agg = aggregate(runs)
    table = format_table(agg, cfg)
    total = time.perf_counter() - start
    (out / "regret_table.md").write_text(table + f"\n\nTotal wall time: {total:.0f}s\n", encoding="utf-8")
    (out / "regret_results.json").write_text(
        json.dumps({"config": asdict(cfg), "aggregate": agg, "runs": runs, "seconds": total}, indent=1), encoding="utf-8"
    )
    plot_path = plot(agg, out / "regret.png", cfg)
    print(table)
    print(f"\ntotal {total:.0f}s; table {out / 'regret_table.md'}, plot {plot_path}")
    return {"aggregate": agg, "table": table, "plot": plot_path, "seconds": total}


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI mode: 2 seeds, passive/offline/bai_ts, 256 queries, a smaller model")
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--methods", nargs="+", default=None, choices=METHODS)
    parser.add_argument("--out", default="runs/regret_bench")
    parser.add_argument("--workers", type=int, default=None,
                        help="parallel runs, one process and one torch thread each (default: 2, the CI machine's cores)")
    args = parser.parse_args(argv)
    cfg = BenchConfig.quick(args.out) if args.quick else BenchConfig(out=args.out)
    if args.queries is not None:
        cfg.queries = args.queries
    if args.seeds is not None:
        cfg.seeds = args.seeds
    if args.methods is not None:
        cfg.methods = args.methods
    if args.workers is not None:
        cfg.workers = args.workers
    cfg.__post_init__()
    return cfg


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_benchmark(parse_args(argv))


if __name__ == "__main__":
    main()
