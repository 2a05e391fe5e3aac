"""What ``oat-train --algo`` means: the algorithms, the env kinds they fit, their presets and seeds.

Everything here is decided from the config alone, before an env, a model or a warm-up is built:

* :data:`ALGOS` — each ``--algo`` and its family: ``dap`` (a DAP loss on duels: dpo, ipo, slic, simpo,
  ld_dpo), ``explore`` (a DAP loss plus an exploring agent: sea, apl, xpo), ``group`` (policy gradient
  over groups of samples of a verifiable prompt: grpo, dr_grpo, rloo, reinforce) and ``turn`` (turn-level
  policy gradient on multi-turn episodes: ppo; reinforce also runs there).
* :func:`env_kind` / :func:`check_env_fits` — which kind of env an id is (``duel``, ``verifiable``,
  ``multiturn``) from its registration alone, and the refusal of a wrong pairing naming what fits.
* :func:`default_config` — the defaults of an ``(algo, preset)``: ``tiny`` reuses the CPU recipes of
  :mod:`oat_agents.recipes` (measured over seeds in ``recipes.MEASURED``), ``hub`` the GPU recipes'.
* :func:`resolve_seeds` — every component seed derived from ``--seed``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from oat_agents.cli.train import TrainConfig

Family = Literal["dap", "explore", "group", "turn"]
EnvKind = Literal["duel", "verifiable", "multiturn"]

# --algo -> family. The DAP names map onto DAPConfig.loss_type (LD-DPO is the library's "lr_dpo").
ALGOS: dict[str, Family] = {
    "dpo": "dap", "ipo": "dap", "slic": "dap", "simpo": "dap", "ld_dpo": "dap",
    "sea": "explore", "apl": "explore", "xpo": "explore",
    "grpo": "group", "dr_grpo": "group", "rloo": "group", "reinforce": "group",
    "ppo": "turn",
}  # fmt: skip
DAP_LOSS = {"dpo": "dpo", "ipo": "ipo", "slic": "slic", "simpo": "simpo", "ld_dpo": "lr_dpo"}
# The loss aggregation each policy-gradient algo is known by (PGConfig.loss_agg): GRPO's per-response token
# mean, Dr.GRPO's constant normaliser, a token mean for the REINFORCE-style estimators.
PG_LOSS_AGG = {
    "grpo": "seq_mean_token_mean",
    "dr_grpo": "constant",
    "rloo": "seq_mean_token_mean",
    "reinforce": "token_mean",
    "ppo": "token_mean",
}
# The env kinds each algo learns from. reinforce runs on both (groups of 1+ samples, or turn-level returns).
FITS: dict[str, tuple[EnvKind, ...]] = {
    **{a: ("duel",) for a, f in ALGOS.items() if f in ("dap", "explore")},
    "grpo": ("verifiable",), "dr_grpo": ("verifiable",), "rloo": ("verifiable",),
    "reinforce": ("verifiable", "multiturn"), "ppo": ("multiturn",),
}  # fmt: skip

# The kind of every id oat_env registers (tests/test_train_algos.py checks this table against the factories'
# return types and against the envs built). Other ids are read from their registration (check_env_fits).
ENV_KINDS: dict[str, EnvKind] = {
    "oat/Arithmetic-Duel-v0": "duel",
    "oat/TLDR-Duel-v0": "duel",
    "oat/UltraFeedback-Duel-v0": "duel",
    "oat/Arithmetic-v0": "verifiable",
    "oat/GSM8K-v0": "verifiable",
    "oat/MATH-v0": "verifiable",
    "oat/Countdown-v0": "verifiable",
    "oat/ReasoningGym-v0": "verifiable",
    "oat/MathMultiTurn-v0": "multiturn",
}
KIND_WORDS = {
    "duel": "a dueling (preference) env",
    "verifiable": "a single-turn verifiable-reward env",
    "multiturn": "a multi-turn env",
}
# The env each algo runs on when --env-id is not given.
DEFAULT_ENV = {
    "duel": "oat/Arithmetic-Duel-v0",
    "verifiable": "oat/Arithmetic-v0",
    "multiturn": "oat/MathMultiTurn-v0",
}


def default_env_id(algo: str) -> str:
    return DEFAULT_ENV[FITS[algo][0]]


def _class_kind(cls: Any) -> EnvKind | None:
    """The kind of an env class (single or vector), None if it is none of oat_env's."""
    from oat_env.envs.dueling import DuelingEnv, DuelingVectorEnv
    from oat_env.envs.multiturn import MultiTurnMathEnv, MultiTurnMathVectorEnv
    from oat_env.envs.verifiable import VerifiableEnv, VerifiableVectorEnv

    if not isinstance(cls, type):
        return None
    for kind, bases in (
        ("duel", (DuelingEnv, DuelingVectorEnv)),
        ("verifiable", (VerifiableEnv, VerifiableVectorEnv)),
        ("multiturn", (MultiTurnMathEnv, MultiTurnMathVectorEnv)),
    ):
        if issubclass(cls, bases):
            return kind  # type: ignore[return-value]
    return None


def env_kind(env_id: str) -> EnvKind | None:
    """The kind of a registered env id, from its registration only (nothing is built): :data:`ENV_KINDS` for
    oat_env's ids; else the class its (vector) entry point is or names as its return type. None = unknown
    (then the built env is checked). Raises ``ValueError`` for an unregistered id."""
    import inspect

    import gymnasium as gym

    import oat_env  # noqa: F401  (registers the env ids)

    if env_id in ENV_KINDS:
        return ENV_KINDS[env_id]
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as err:
        raise ValueError(
            f"--env-id {env_id!r} is not a registered env ({err}); oat_env's ids: {', '.join(ENV_KINDS)}"
        ) from None
    for target in (spec.vector_entry_point, spec.entry_point):
        if target is None:
            continue
        try:
            obj = gym.envs.registration.load_env_creator(target) if isinstance(target, str) else target
        except (ImportError, AttributeError, ValueError):
            continue
        if isinstance(obj, type):
            kind = _class_kind(obj)
        else:
            returns = inspect.signature(obj).return_annotation
            if isinstance(returns, str):  # postponed annotations: resolve in the factory's module
                returns = getattr(obj, "__globals__", {}).get(returns)
            kind = _class_kind(returns)
        if kind is not None:
            return kind
    return None


def fitting(kind: EnvKind) -> tuple[list[str], list[str]]:
    """``(algos, oat_env ids)`` of an env kind."""
    return [a for a, kinds in FITS.items() if kind in kinds], [e for e, k in ENV_KINDS.items() if k == kind]


def refusal(algo: str, env_id: str, kind: EnvKind | None) -> str:
    """Why ``algo`` cannot learn from ``env_id``, naming the envs that fit it and the algos that fit the env."""
    kinds = FITS[algo]
    envs = [e for e, k in ENV_KINDS.items() if k in kinds]
    what = KIND_WORDS[kind] if kind else "none of oat_env's env kinds"
    message = (
        f"--algo {algo} learns from {' or '.join(KIND_WORDS[k] for k in kinds)}, but {env_id} is {what}. "
        f"Envs for --algo {algo}: {', '.join(envs)}."
    )
    if kind is not None:
        message += f" Algos for {env_id}: {', '.join(fitting(kind)[0])}."
    return message


def check_env_fits(algo: str, env_id: str) -> EnvKind | None:
    """Refuse, before anything is built, an env of the wrong kind for ``algo``; returns the env's kind (None =
    unknown from the registration: :func:`check_built_env` checks the env once it is built)."""
    if algo not in ALGOS:
        raise ValueError(f"unknown --algo {algo!r}; choose from {', '.join(ALGOS)}")
    kind = env_kind(env_id)
    if kind is not None and kind not in FITS[algo]:
        raise ValueError(refusal(algo, env_id, kind))
    return kind


def check_built_env(algo: str, env_id: str, env: Any) -> EnvKind:
    """The kind of a built vector env whose registration did not tell; refuses a wrong one."""
    kind = _class_kind(type(env.unwrapped))
    if kind not in FITS[algo]:
        raise ValueError(refusal(algo, env_id, kind))
    return kind  # type: ignore[return-value]


def resolved_preset(preset: str, model: str) -> str:
    from oat_agents.cli.train import TINY_MODEL

    if preset == "auto":
        return "tiny" if model == TINY_MODEL else "hub"
    if preset not in ("tiny", "hub"):
        raise ValueError(f"--preset must be auto, tiny or hub, got {preset!r}")
    return preset


def kind_for_defaults(algo: str, env_id: str | None) -> EnvKind:
    """The env kind the defaults are chosen for: the given env's (when known and fitting), else the algo's own."""
    if env_id is not None:
        try:
            kind = env_kind(env_id)
        except ValueError:
            kind = None
        if kind in FITS.get(algo, ()):
            return kind  # type: ignore[return-value]
    return FITS.get(algo, ("duel",))[0]


def pg_options(config: TrainConfig, kind: str | None = None) -> Any:
    """The policy-gradient agent options ``config.algo`` reads: ``config.turn`` (``--turn.*``) on a multi-turn
    env, else ``config.rl`` (``--rl.*``). ``kind``: the env's kind when known (a built env), else the kind the
    defaults are chosen for (:func:`kind_for_defaults`)."""
    kind = kind or kind_for_defaults(config.algo, config.env_id)
    return config.turn if kind == "multiturn" else config.rl


def default_config(
    algo: str = "dpo", preset: str = "auto", model: str | None = None, env_id: str | None = None
) -> TrainConfig:
    """The :class:`~oat_agents.cli.train.TrainConfig` defaults of ``--algo ALGO --preset PRESET`` (what
    ``oat-train`` parses its flags over; ``oat-train --algo ALGO --help`` shows them).

    ``tiny`` (the default for ``tiny-char-llama``): the settings of the CPU recipes in :mod:`oat_agents.recipes`
    -- width-64 2-layer model, 100 warm-up steps, single-digit additions with every held-out problem evaluated;
    DAP family: the ``demo`` recipe (32 duels per round, lr 1e-4, 2 epochs), 4,096 queries; ``sea``: 4
    candidates, BAI-TS over a 10-member ERM (the ``sea`` recipe); ``group``: the ``dr_grpo`` recipe (16 prompts
    x 8 samples, lr 3e-4, 2 epochs x 2 mini-batches), 8,192 queries; ``turn``: the ``multiturn`` recipe (32
    episodes, 3 attempts, lr 3e-4), 8,192 queries.

    ``hub`` (the default for any other ``--model``): the GPU recipes' learner (ZeRO-2, bf16, gradient
    checkpointing; lr 5e-7 for the DAP family as ``examples/tldr_online_dpo.sh``, 1e-6 for policy gradient as
    ``examples/math_drgrpo.sh``) and the library's sampling defaults; no warm-up.
    """
    from oat_agents.agents.dap import DAPAgentConfig
    from oat_agents.agents.group_rl import GroupRLAgentConfig
    from oat_agents.agents.multiturn import MultiTurnAgentConfig
    from oat_agents.algorithms.dap import DAPConfig
    from oat_agents.algorithms.pg import PGConfig
    from oat_agents.cli.train import TINY_MODEL, TrainConfig
    from oat_agents.exploration.explorer import ExplorerConfig
    from oat_agents.learners.engine import LearnerConfig
    from oat_agents.loops.bookkeeping import LoopConfig
    from oat_agents.recipes import NUM_EVAL_PROMPTS
    from oat_agents.tiny import WarmupConfig

    model = model or TINY_MODEL
    family = ALGOS.get(algo, "dap")
    kind = kind_for_defaults(algo, env_id)
    config = TrainConfig(algo=algo, preset=preset, model=model)  # type: ignore[arg-type]
    preset = resolved_preset(preset, model)  # config.json records the resolved one
    pg = PGConfig(
        advantage_estimator=algo if family in ("group", "turn") else "dr_grpo",
        loss_agg=PG_LOSS_AGG.get(algo, "constant"),
    )
    if kind == "multiturn":
        config.turn = MultiTurnAgentConfig(pg=pg)
    elif kind == "verifiable":
        config.rl = GroupRLAgentConfig(pg=pg)
    if family in ("dap", "explore"):
        config.agent = DAPAgentConfig(dap=DAPConfig(loss_type=DAP_LOSS.get(algo, "dpo")))  # type: ignore[arg-type]
    if preset == "hub":
        config.warmup = WarmupConfig(steps=0)
        dap_like = family in ("dap", "explore")
        config.learner = LearnerConfig(
            zero_stage=2,
            dtype="bf16",
            gradient_checkpointing=True,
            learning_rate=5e-7 if dap_like else 1e-6,
            micro_batch_size=8 if dap_like else 2,
        )
        config.num_envs = 64 if dap_like else 16
        if algo == "sea":
            config.agent.num_samples = 20  # examples/tldr_online_dpo.sh sea
        return config
    # tiny: the CPU recipes
    config.tiny_hidden, config.tiny_layers, config.tiny_heads = 64, 2, 2
    config.warmup = WarmupConfig(steps=100, batch_size=32, learning_rate=3e-3)
    eval_prompts = NUM_EVAL_PROMPTS if env_id is None else 100
    if kind == "duel":
        config.num_envs = 32
        config.agent = DAPAgentConfig(
            num_samples=4 if algo == "sea" else 2,
            max_new_tokens=4,
            max_seq_length=16,
            learn_epochs=2,
            dap=DAPConfig(loss_type=DAP_LOSS.get(algo, "dpo"), beta=0.1),
        )  # type: ignore[arg-type]
        config.explorer = ExplorerConfig(method="bai_ts", num_members=10)
        config.learner = LearnerConfig(zero_stage=0, learning_rate=1e-4, micro_batch_size=32)
        config.loop = LoopConfig(total_queries=4096, eval_query_interval=1024, num_eval_prompts=eval_prompts)
    elif kind == "verifiable":
        config.num_envs = 16
        config.rl = GroupRLAgentConfig(
            num_samples=8, max_new_tokens=3, max_seq_length=16, learn_epochs=2, num_mini_batches=2, pg=pg
        )
        config.learner = LearnerConfig(zero_stage=0, learning_rate=3e-4, micro_batch_size=128)
        config.loop = LoopConfig(total_queries=8192, eval_query_interval=2048, num_eval_prompts=eval_prompts)
    else:
        config.num_envs = 32
        # The conversation grows by the env's feedback every turn: the recipe's short feedback fits in 64 tokens,
        # another env's default feedback needs more.
        config.turn = MultiTurnAgentConfig(
            max_new_tokens=3,
            max_seq_length=64 if env_id is None else 320,
            learn_epochs=2,
            num_mini_batches=2,
            turn_gamma=0.9,
            min_turns_to_learn=64,
            pg=pg,
        )
        config.learner = LearnerConfig(zero_stage=0, learning_rate=3e-4, micro_batch_size=32)
        config.loop = LoopConfig(total_queries=8192, eval_query_interval=2048, num_eval_prompts=eval_prompts)
    return config


def apply_algo(config: TrainConfig) -> TrainConfig:
    """A copy of ``config`` with what ``--algo`` implies filled in: the DAP loss type (from the default ``dpo``)
    and the policy-gradient estimator and aggregation (from the default ``dr_grpo``/``constant``); a conflicting
    explicit setting is refused."""
    config = copy.deepcopy(config)
    algo, family = config.algo, ALGOS[config.algo]
    if family == "dap":
        wanted = DAP_LOSS[algo]
        if config.agent.dap.loss_type == "dpo" and wanted != "dpo":
            config.agent.dap = _replace(config.agent.dap, loss_type=wanted)
        if config.agent.dap.loss_type != wanted:
            raise ValueError(
                f"--algo {algo} is the {wanted!r} loss, but --agent.dap.loss-type is "
                f"{config.agent.dap.loss_type!r}: pass --algo {algo_of_loss(config.agent.dap.loss_type)} "
                "instead (or leave --agent.dap.loss-type out)"
            )
    elif family in ("group", "turn"):
        options = pg_options(config)
        flag = "--turn" if options is config.turn else "--rl"
        pg = options.pg
        default = "reinforce" if options is config.turn else "dr_grpo"  # the estimator of the blank config
        if pg.advantage_estimator == default and algo != default:
            agg = PG_LOSS_AGG[algo] if pg.loss_agg == PG_LOSS_AGG[default] else pg.loss_agg
            options.pg = _replace(pg, advantage_estimator=algo, loss_agg=agg)
        if options.pg.advantage_estimator != algo:
            raise ValueError(
                f"--algo {algo} is the {algo!r} estimator, but {flag}.pg.advantage-estimator is "
                f"{options.pg.advantage_estimator!r}: pass --algo {options.pg.advantage_estimator} "
                f"instead (or leave {flag}.pg.advantage-estimator out)"
            )
    return config


def _replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)


def algo_of_loss(loss_type: str) -> str:
    return next((a for a, loss in DAP_LOSS.items() if loss == loss_type), loss_type)


# Options only some algos read. A non-default value of one of them under another algo would be ignored
# silently: check_algo_options refuses it. Values: the algos (or families) that read the option.
ALGO_OPTIONS: dict[str, tuple[str, ...]] = {
    "agent": ("dap", "explore"), "rl": ("grpo", "dr_grpo", "rloo", "reinforce"), "turn": ("ppo", "reinforce"),
    "critic": ("ppo",),
    "explorer": ("sea",), "features": ("sea",), "rollout_fraction": ("sea",), "rollout_min_queries": ("sea",),
    "apl_prompt_pool_size": ("apl",), "xpo_alpha": ("xpo",),
}  # fmt: skip


def readers_of(option: str) -> list[str]:
    """The algos that read a TrainConfig option of :data:`ALGO_OPTIONS`."""
    readers = ALGO_OPTIONS[option]
    return [a for a, family in ALGOS.items() if a in readers or family in readers]


def _flag(name: str) -> str:
    nested = name in ("agent", "rl", "turn", "critic", "explorer")
    return f"--{name.replace('_', '-')}{'.*' if nested else ''}"


def check_algo_options(config: TrainConfig, defaults: TrainConfig | None = None) -> None:
    """Refuse options that ``config.algo`` does not read (set away from ``defaults``, by default
    :func:`default_config` of the same algo, preset, model and env)."""
    if defaults is None:
        defaults = default_config(config.algo, config.preset, config.model, config.env_id)
    algo, family = config.algo, ALGOS[config.algo]
    # reinforce reads --rl.* on a verifiable env and --turn.* on a multi-turn one, never both.
    unread = set() if family not in ("group", "turn") else {"rl", "turn"} - {
        "turn" if pg_options(config) is config.turn else "rl"}
    stray = [
        name
        for name, readers in ALGO_OPTIONS.items()
        if (name in unread or (algo not in readers and family not in readers))
        and getattr(config, name) != getattr(defaults, name)
    ]
    if stray:
        flags = ", ".join(f"{_flag(n)} (--algo {'/'.join(readers_of(n))})" for n in stray)
        raise ValueError(f"{flags} set, but --algo is {algo!r}: these options would be ignored")


# Component seeds: (TrainConfig attribute, seed field, CLI flag). Each is derived from --seed; the ones marked
# per-rank add the rank under torchrun so that ranks sample and explore differently.
SEED_FIELDS = (
    ("warmup", "seed"),
    ("agent", "seed"),
    ("rl", "seed"),
    ("turn", "seed"),
    ("explorer", "seed"),
    ("learner", "seed"),
    ("loop", "seed"),
)
PER_RANK = ("agent", "rl", "turn", "explorer")
# The loops themselves reset rank r's env with loop.seed + r (oat_agents.loops.bookkeeping.RoundBookkeeper.start).
PER_RANK_NOTE = (
    "rank r adds r to the agent, rl, turn and explorer seeds; the loop resets rank r's env with loop + r"
)


def seed_flags() -> list[str]:
    return [f"--{part}.{name}" for part, name in SEED_FIELDS]


def check_no_component_seed_flags(argv: list[str]) -> None:
    """Refuse ``--agent.seed`` & co. on the command line: ``--seed`` derives every component's seed."""
    given = sorted({f for a in argv for f in seed_flags() if a.replace("_", "-").split("=", 1)[0] == f})
    if given:
        raise ValueError(
            f"{', '.join(given)}: component seeds are derived from --seed (see oat-train --help, "
            "--seed); pass --seed N instead"
        )


def resolve_seeds(config: TrainConfig, rank: int = 0) -> dict[str, int]:
    """Every component seed of this rank, derived from ``config.seed``: the model init, warm-up, learner and the
    env's prompt stream (``loop``; the loop adds the rank itself) use ``seed``; the agent's sampling
    (``agent``/``rl``) and SEA's explorer use ``seed + rank``. ``loop.eval_seed`` (which held-out prompts) is not derived: every seed evaluates the same
    prompts. A component seed set away from its default to another value than ``seed`` is refused."""
    from oat_agents.cli.train import TrainConfig

    blank = TrainConfig()
    for part, name in SEED_FIELDS:
        value, default = getattr(getattr(config, part), name), getattr(getattr(blank, part), name)
        if value not in (default, config.seed):
            raise ValueError(
                f"{part}.{name}={value}: component seeds are derived from TrainConfig.seed "
                f"({config.seed}); set seed instead"
            )
    seeds = {"seed": config.seed, "model_init": config.seed, "policy": config.seed}
    for part, _ in SEED_FIELDS:
        seeds[part] = config.seed + (rank if part in PER_RANK else 0)
    seeds["eval_seed"] = config.loop.eval_seed
    return seeds


def apply_seeds(config: TrainConfig, seeds: dict[str, int]) -> TrainConfig:
    """A copy of ``config`` whose component seeds are ``seeds`` (what :func:`resolve_seeds` derived)."""
    config = copy.deepcopy(config)
    for part, name in SEED_FIELDS:
        setattr(getattr(config, part), name, seeds[part])
    return config
