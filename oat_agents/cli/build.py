"""``oat-train``'s builders: the env, the models (and the tiny model's warm-up), the policy and the agent of a
resolved :class:`~oat_agents.cli.train.TrainConfig` (its component seeds already derived, see
:func:`oat_agents.cli.algos.resolve_seeds`)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from oat_agents.cli.algos import ALGOS, pg_options
from oat_agents.learners import dist

if TYPE_CHECKING:
    from oat_agents.cli.train import TrainConfig


def build_env(config: TrainConfig, env_id: str, env_kwargs: dict[str, Any], kind: str) -> Any:
    """The vector env of ``kind``: ``num_envs`` duels (duel), ``num_envs`` prompts x ``rl.num_samples`` samples
    in contiguous groups (verifiable), or ``num_envs`` parallel episodes (multiturn)."""
    import gymnasium as gym

    if kind == "verifiable":
        from oat_agents.loops.group_rl import make_grouped_vec

        return make_grouped_vec(
            env_id, num_prompts=config.num_envs, group_size=config.rl.num_samples, **env_kwargs
        )
    return gym.make_vec(env_id, num_envs=config.num_envs, **env_kwargs)


def build_models(config: TrainConfig, env: Any) -> tuple[Any, Any, Any, dict[str, float]]:
    """``(policy_model_or_path, trainable_model, tokenizer, warmup_metrics)`` for ``config.model``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from oat_agents.cli.train import TINY_MODEL

    if config.model == TINY_MODEL:
        from oat_agents.tiny import CharTokenizer, build_tiny_llama, sft_warmup

        tokenizer = CharTokenizer()
        model = build_tiny_llama(
            len(tokenizer),
            hidden=config.tiny_hidden,
            layers=config.tiny_layers,
            heads=config.tiny_heads,
            seed=config.seed,
        )
        source = getattr(getattr(env.unwrapped, "task", None), "source", None)
        if config.warmup.steps > 0 and not hasattr(source, "sample"):
            raise ValueError(
                "the tiny model's warm-up needs a procedural env (e.g. oat/Arithmetic-Duel-v0); "
                "pass --warmup.steps 0 to start from the untrained model"
            )
        warm = sft_warmup(
            model, tokenizer, source, config.warmup, progress=config.loop.progress and dist.is_main_process()
        )
        return copy.deepcopy(model), model, tokenizer, warm
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    model = AutoModelForCausalLM.from_pretrained(config.model)
    return config.model, model, tokenizer, {}


def build_policy(config: TrainConfig, policy_model: Any, tokenizer: Any, kind: str | None = None) -> Any:
    """The actor: ``HFPolicy`` on the model object, or ``VLLMPolicy`` on its id/path (``--vllm.*``; with
    ``--rl.collocate``/``--turn.collocate`` it is built with sleep mode and put to sleep until the first
    generation). ``kind``: the env's kind (which policy-gradient options apply)."""
    if config.backend == "vllm":
        from oat_agents.policies.vllm import VLLMPolicy

        if not isinstance(policy_model, str):
            raise ValueError("the vllm backend needs a model id or path (save the tiny model first)")
        collocate = ALGOS[config.algo] in ("group", "turn") and pg_options(config, kind).collocate
        v = config.vllm
        policy = VLLMPolicy(
            policy_model,
            seed=config.seed,
            apply_chat_template=config.apply_chat_template,
            dtype=v.dtype,
            gpu_memory_utilization=v.gpu_memory_utilization,
            max_model_len=v.max_model_len,
            enable_prefix_caching=v.enable_prefix_caching,
            enable_sleep_mode=collocate,
        )
        if collocate:
            policy.sleep(level=1)  # the agent wakes it for every generation and weight sync
        return policy
    from oat_agents.policies.hf import HFPolicy

    return HFPolicy(policy_model, tokenizer, apply_chat_template=config.apply_chat_template,
                    share_prefill=config.share_prefill)


def needs_reference(config: TrainConfig, kind: str | None = None) -> bool:
    """Whether the learner needs a frozen reference model: every DAP loss but SimPO; policy gradient only with
    a KL term (``--rl.pg.kl-mode``/``--turn.pg.kl-mode``)."""
    if ALGOS[config.algo] in ("group", "turn"):
        return pg_options(config, kind).pg.kl_mode != "none"
    return config.agent.dap.loss_type != "simpo"


def build_agent(
    config: TrainConfig, env: Any, policy: Any, learner: Any, initial: Any, tokenizer: Any, kind: str | None = None
) -> Any:
    """The ``config.algo`` agent for an env of ``kind``; ``initial`` is an untouched copy of the initial model
    (SEA's features, XPO's reference samples, PPO's critic; None for the other algos). The config's seeds are
    this rank's."""
    algo, family = config.algo, ALGOS[config.algo]
    if family in ("group", "turn"):
        options = pg_options(config, kind)
        if options is config.rl:
            from oat_agents.agents.group_rl import GroupRLAgent

            return GroupRLAgent(policy, learner, copy.deepcopy(options))
        from oat_agents.agents.multiturn import MultiTurnAgent

        critic = None
        if options.pg.advantage_estimator == "ppo":
            from oat_agents.learners.critic import Critic, CriticTrainer

            critic = CriticTrainer(Critic(initial), copy.deepcopy(config.critic))
        return MultiTurnAgent(policy, learner, copy.deepcopy(options), critic=critic)
    from oat_agents.agents.dap import DAPAgent, DAPAgentConfig

    base = {name: copy.deepcopy(getattr(config.agent, name)) for name in DAPAgentConfig.__dataclass_fields__}
    if algo == "sea":
        import torch

        from oat_agents.agents.sea import SEAAgent, SEAAgentConfig, training_prompt_sampler
        from oat_agents.exploration.explorer import Explorer
        from oat_agents.exploration.features import SentenceEmbeddingFeatures, policy_hidden_state_features

        # The features are a forward pass per candidate: on the accelerator when there is one.
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if config.features == "embedding":
            features = SentenceEmbeddingFeatures(device=device, cache_size=4096)
        else:
            frozen = initial.eval().to(device)
            features = policy_hidden_state_features(frozen, tokenizer, cache_size=4096)
        sea_config = SEAAgentConfig(
            rollout_fraction=config.rollout_fraction, rollout_min_queries=config.rollout_min_queries, **base
        )
        sampler = training_prompt_sampler(env) if config.rollout_fraction > 0 else None
        explorer = Explorer(features, copy.deepcopy(config.explorer))
        return SEAAgent(policy, learner, sea_config, explorer, rollout_prompts=sampler)
    if algo == "apl":
        from oat_agents.agents.apl import APLAgent, APLAgentConfig

        pool = config.apl_prompt_pool_size
        if pool and pool <= config.num_envs:
            raise ValueError(
                f"--apl-prompt-pool-size ({pool}) must exceed --num-envs ({config.num_envs}), or be 0"
            )
        return APLAgent(policy, learner, APLAgentConfig(prompt_pool_size=pool, **base))
    if algo == "xpo":
        from oat_agents.agents.xpo import XPOAgent, XPOAgentConfig

        if config.backend != "hf":
            raise ValueError(
                "--algo xpo samples the reference with a second policy; it supports --backend hf only"
            )
        ref_policy = build_policy(config, initial, tokenizer)
        return XPOAgent(
            policy, learner, XPOAgentConfig(xpo_alpha=config.xpo_alpha, **base), ref_policy=ref_policy
        )
    return DAPAgent(policy, learner, DAPAgentConfig(**base))
