r"""The arithmetic testbeds of the regret benchmark: online DPO of a tiny CPU Llama on ``oat/Arithmetic-Duel-v0``.

Every method gets the same oracle-query budget, the same SFT-warmed tiny Llama (one warm-up per seed, shared by
all methods), the same prompt stream (env seed) and the same DPO learner; only how pairs are chosen (and whether
the actor is synced) differs:

================  ======================================================================================
``passive``       online DPO: two random samples per prompt (baseline; the ratios are against it)
``random``        SEA agent with the ``random`` selector: a uniform pair of distinguishable candidates among
                  the same ``num_samples`` the explorers get (the "random is hard to beat" control)
``offline``       offline DPO: the same as passive, but the actor is never synced (``sync_params_every=0``)
``ee_ts``         SEA agent, E&E double Thompson sampling from the ERM
``bai_ts``        SEA agent, BAI Thompson sampling (first arm TS, second arm most uncertain duel) = SEA
``ids``           SEA agent, information-directed sampling (least regret² / information gain)
``uncertainty``   SEA agent, the pair with the largest epistemic variance of its reward difference
``sea_rollout``   ``bai_ts`` + Dyna model rollouts: as many ERM-labelled pairs as oracle pairs per round
                  (rollout pairs are oat's confident ones: a random member's best vs worst candidate)
``apl``           APL: the highest-entropy ``num_envs`` prompts of a pool of ``apl_pool_factor × num_envs``,
                  then the pair with the largest DPO implicit-reward margin
``xpo``           XPO: online DPO on (policy sample, reference sample) duels + the α·log π(ỹ_ref) optimism
                  term on the dueled reference sample
================  ======================================================================================

The ERM (:class:`~oat_agents.exploration.explorer.Explorer`'s default: 10 members, one hidden layer of 64) sees
the mean-pooled last hidden state of the frozen initial policy; it can represent the correctness of an answer
only as far as those features separate right from wrong sums (its held-out label accuracy is the measure).

Testbeds:

* ``demo`` — the demo's task (``make demo``): single-digit sums, 33 held-out problems never drawn in training, a
  2-layer width-64 Llama, DPO β = 0.1 at lr 1e-4 with 2 passes over each round's 32 pairs, 4 candidates for the
  explorers. Passive online DPO measurably learns it on CPU within the budget; the answer space is small (the
  policy's 4 samples are often all the same answer), so a selector has little to choose from.
* ``arithmetic-wide`` — sums of terms of up to 2 digits (answers 0–198, 40 % of the 10,000 problems held out,
  64 held-out prompts per evaluation) with 8 candidates: a far larger answer space in which passive online DPO
  learns slowly and the selector has distinct candidates to choose from.

Runs are independent processes; a run's result depends only on ``(method, seed, config)``.
"""

from __future__ import annotations

import copy
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oat_agents.bench.regret.config import TWO_SAMPLE_METHODS, CommonConfig
from oat_agents.bench.regret.report import explorer_summary
from oat_agents.recipes import ARITHMETIC

ENV_ID = "oat/Arithmetic-Duel-v0"
QUICK_METHODS: tuple[str, ...] = ("passive", "offline", "bai_ts")
# The demo's task (oat_agents.recipes): single-digit sums with 40 % of the 100 problems held out.
DEMO_ENV_KWARGS: dict[str, Any] = dict(ARITHMETIC)
# Terms of 1–2 digits: 10,000 problems, answers 0–198.
WIDE_ENV_KWARGS: dict[str, Any] = {**ARITHMETIC, "max_digits": 2}


@dataclass
class BenchConfig(CommonConfig):
    """Options of the arithmetic testbeds (``demo`` by default; :meth:`for_testbed` for the others)."""

    env_kwargs: dict[str, Any] = field(default_factory=lambda: dict(DEMO_ENV_KWARGS))
    warmup_steps: int = 100
    hidden: int = 64
    layers: int = 2
    learning_rate: float = 1e-4
    learn_epochs: int = 2
    beta: float = 0.1
    sft_weight: float = 0.0
    warmup_batch_size: int = 32
    num_eval_prompts: int = 33  # all the held-out single-digit problems
    max_new_tokens: int = 4
    xpo_alpha: float = 1e-3

    @classmethod
    def for_testbed(cls, testbed: str, out: str, quick: bool = False) -> BenchConfig:
        """The documented defaults of ``demo`` or ``arithmetic-wide`` (or their ``--quick`` CI versions)."""
        if testbed == "demo":
            return cls.quick(out) if quick else cls(out=out)
        if testbed != "arithmetic-wide":
            raise ValueError(f"{testbed!r} is not an arithmetic testbed")
        if quick:
            return cls(
                testbed=testbed,
                env_kwargs=dict(WIDE_ENV_KWARGS),
                queries=256,
                seeds=[0, 1],
                methods=list(QUICK_METHODS),
                num_envs=16,
                num_samples=8,
                warmup_steps=50,
                hidden=32,
                eval_every=128,
                num_eval_prompts=20,
                out=out,
            )
        return cls(
            testbed=testbed,
            env_kwargs=dict(WIDE_ENV_KWARGS),
            queries=8192,
            seeds=[0, 1, 2, 3, 4],
            num_samples=8,
            warmup_steps=300,
            eval_every=1024,
            num_eval_prompts=64,
            out=out,
        )

    @classmethod
    def quick(cls, out: str) -> BenchConfig:
        return cls(
            queries=256,
            seeds=[0, 1],
            methods=list(QUICK_METHODS),
            num_envs=16,
            warmup_steps=50,
            hidden=32,
            eval_every=128,
            num_eval_prompts=20,
            out=out,
        )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.testbed == "linear":
            raise ValueError(
                "testbed 'linear' has its own config (oat_agents.bench.regret.linear.LinearConfig)"
            )

    def describe(self) -> str:
        import json

        return (
            f"Regret benchmark, testbed `{self.testbed}`: {ENV_ID} {json.dumps(self.env_kwargs)}, tiny Llama "
            f"(width {self.hidden}, {self.layers} layers): {self.queries} oracle queries, seeds {self.seeds}, "
            f"{self.num_envs} prompts per round ({self.num_samples} samples each for the explorers, 2 for "
            f"{', '.join(TWO_SAMPLE_METHODS)}), {self.num_eval_prompts} held-out prompts per evaluation."
        )

    def plot_title(self) -> str:
        return f"{self.testbed}: {ENV_ID}, tiny Llama, {len(self.seeds)} seeds (mean ± s.e.)"


def _make_env(cfg: BenchConfig) -> Any:
    import gymnasium as gym

    import oat_env  # noqa: F401  (registers the env ids)

    return gym.make_vec(ENV_ID, num_envs=cfg.num_envs, **cfg.env_kwargs)


def warm_model(cfg: BenchConfig, seed: int) -> tuple[Any, Any]:
    """The seed's SFT-warmed tiny Llama and its tokenizer (every method starts from a copy)."""
    from oat_agents.tiny import CharTokenizer, WarmupConfig, build_tiny_llama, sft_warmup

    env = _make_env(cfg)
    tokenizer = CharTokenizer()
    heads = 4 if cfg.hidden >= 128 else 2  # head width 32 (16 for the quick model)
    model = build_tiny_llama(len(tokenizer), hidden=cfg.hidden, layers=cfg.layers, heads=heads, seed=seed)
    sft_warmup(
        model,
        tokenizer,
        env.unwrapped.task.source,
        WarmupConfig(steps=cfg.warmup_steps, batch_size=cfg.warmup_batch_size, learning_rate=3e-3, seed=seed),
    )
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
        LearnerConfig(
            zero_stage=0, learning_rate=cfg.learning_rate, micro_batch_size=32, max_grad_norm=1.0, seed=seed
        ),
        ref_model=copy.deepcopy(model),
    )
    policy = HFPolicy(copy.deepcopy(model), tokenizer, device="cpu")
    num_samples = 2 if method in TWO_SAMPLE_METHODS else cfg.num_samples
    common = dict(
        num_samples=num_samples,
        temperature=1.0,
        max_new_tokens=cfg.max_new_tokens,
        max_seq_length=16,
        seed=seed,
        learn_epochs=cfg.learn_epochs,
        dap=DAPConfig(loss_type="dpo", beta=cfg.beta, sft_weight=cfg.sft_weight),
    )
    if method in ("passive", "offline"):
        return DAPAgent(policy, learner, DAPAgentConfig(**common))
    if method == "apl":
        pool = cfg.apl_pool_factor * cfg.num_envs if cfg.apl_pool_factor > 1 else 0
        return APLAgent(policy, learner, APLAgentConfig(prompt_pool_size=pool, **common))
    if method == "xpo":
        ref_policy = HFPolicy(copy.deepcopy(model), tokenizer, device="cpu")
        return XPOAgent(
            policy, learner, XPOAgentConfig(xpo_alpha=cfg.xpo_alpha, **common), ref_policy=ref_policy
        )
    selector = "bai_ts" if method == "sea_rollout" else method
    features = policy_hidden_state_features(copy.deepcopy(model), tokenizer, pooling="mean", cache_size=4096)
    explorer = Explorer(features, ExplorerConfig(method=selector, seed=seed))
    rollout = cfg.rollout_fraction if method == "sea_rollout" else 0.0
    return SEAAgent(
        policy,
        learner,
        SEAAgentConfig(rollout_fraction=rollout, rollout_min_queries=4 * cfg.num_envs, **common),
        explorer=explorer,
        rollout_prompts=training_prompt_sampler(env),
    )


def run_one(
    method: str, cfg: BenchConfig, seed: int, model: Any, tokenizer: Any, log_root: Path
) -> dict[str, Any]:
    """One run; returns its curves: eval points and cumulative regret after every round."""
    from oat_agents.loops import LoopConfig, run_online

    run_dir = log_root / f"{method}_seed{seed}"
    # A rerun into the same --out starts the run's logs afresh (the logger appends to metrics.jsonl).
    shutil.rmtree(run_dir, ignore_errors=True)
    env = _make_env(cfg)
    agent = build_agent(method, cfg, seed, model, tokenizer, env)
    loop = LoopConfig(
        total_queries=cfg.queries,
        sync_params_every=0 if method == "offline" else 1,
        eval_query_interval=cfg.eval_every,
        num_eval_prompts=cfg.num_eval_prompts,
        eval_seed=1234,
        log_dir=str(run_dir),
        seed=seed,
        progress=False,
        tensorboard=False,
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
