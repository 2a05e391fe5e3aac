"""The env ↔ agent online loop: act, query the oracle, learn, sync, evaluate, log, checkpoint.

One round (DESIGN.md §4)::

    [obs = env.serve_prompts(agent.choose_prompts(env.prompt_pool(P), B))]   # agents that pick prompts (APL)
    actions = agent.act(obs)                          # sample candidates, pick the duel
    obs, r, term, trunc, info = env.step(actions)     # ONE batched oracle call
    agent.observe(labels)                             # fill the buffer
    agent.learn()                                     # DAP loss on the learner
    every sync_params_every rounds: agent.sync_weights()   (1 = online, k = iterative, 0 = never/offline)

Every ``eval_query_interval`` oracle queries the *learner's* current weights are evaluated greedily on
held-out prompts (``eval/win_rate``, ``eval/anytime_regret``, ``eval/accuracy`` where the env supports
them). When the actor is stale (iterative/offline), the learner weights are put into the policy for the
evaluation only and the actor's weights are restored afterwards, so data collection is unaffected.

Metrics go to TensorBoard (``log_dir``), to ``log_dir/metrics.jsonl``, optionally to wandb, and the
key ones to a progress bar; every evaluation also dumps its prompts, responses and scores to
``log_dir/eval/queries_<N>.json``. Checkpoints (learner, optimizer, schedule, RNG, buffer, env prompt
stream, counters, history) are written atomically every ``save_every`` rounds and resumed from with
``resume=True``.

Several processes (``torchrun``, DESIGN.md §6): every rank runs its own env and actor and duels
``num_envs`` prompts per round, from its own prompt stream (the env is reset with ``seed + rank``); the
learners are data-parallel (DeepSpeed averages the gradients), so one round trains on ``world ×
num_envs`` pairs. ``total_queries`` and the logged ``misc/queries`` and ``regret/cumulative`` count all
ranks' queries (summed every round). Every rank evaluates the same held-out prompts with the same weights;
rank 0 alone logs, dumps and shows progress. A checkpoint holds every rank's env, agent and regret state
and must be resumed with the same number of ranks. Each rank's explorer (SEA's ERM) learns from its own
rank's labels.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oat_agents.learners import dist
from oat_env.metrics import RegretTracker


@dataclass
class LoopConfig:
    """Options of :func:`run_online`."""

    total_queries: int = 1024
    """Stop after this many oracle queries (the x-axis of sample-efficiency curves)."""
    sync_params_every: int = 1
    """Rounds between weight syncs learner → policy: 1 = online, k = iterative, 0 = never (offline)."""
    eval_query_interval: int = 256
    """Evaluate every this many oracle queries (and before the first and after the last round); 0 = never."""
    num_eval_prompts: int = 100
    """Held-out prompts per evaluation."""
    eval_seed: int = 0
    """Which held-out prompts (the same set at every evaluation)."""
    log_dir: str = "runs/oat"
    """TensorBoard logs, metrics.jsonl, evaluation dumps and (by default) checkpoints."""
    checkpoint_dir: str | None = None
    """Where checkpoints go; default ``<log_dir>/checkpoints``."""
    save_every: int = 0
    """Rounds between checkpoints; 0 = only at the end."""
    keep_checkpoints: int = 2
    """Checkpoints kept (oldest deleted first)."""
    resume: bool = False
    """Continue from the latest checkpoint in ``checkpoint_dir`` if there is one."""
    seed: int = 0
    """Seed of the env's prompt stream and label draws."""
    progress: bool = True
    """Show a progress bar with the key metrics."""
    tensorboard: bool = True
    """Write TensorBoard event files to ``log_dir``."""
    wandb_project: str | None = None
    """Also log to this wandb project (needs ``pip install wandb``)."""

    def __post_init__(self) -> None:
        if self.total_queries < 1:
            raise ValueError(f"total_queries must be >= 1, got {self.total_queries}")
        for name in ("sync_params_every", "eval_query_interval", "save_every", "num_eval_prompts"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")


class MetricLogger:
    """Writes scalar metrics to TensorBoard, a JSON-lines file and optionally wandb; x-axis = queries."""

    def __init__(self, config: LoopConfig, run_config: dict[str, Any] | None = None):
        self.dir = Path(config.log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = (self.dir / "metrics.jsonl").open("a", encoding="utf-8")
        self.tb = None
        if config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.dir))
        self.wandb = None
        if config.wandb_project:
            import wandb  # optional dependency

            self.wandb = wandb.init(project=config.wandb_project, config=run_config or {}, dir=str(self.dir))

    def log(self, metrics: dict[str, float], queries: int) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}
        self.jsonl.write(json.dumps({"queries": queries, **clean}) + "\n")
        self.jsonl.flush()
        if self.tb is not None:
            for k, v in clean.items():
                self.tb.add_scalar(k, v, queries)
        if self.wandb is not None:
            self.wandb.log(clean, step=queries)

    def close(self) -> None:
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


@dataclass
class LoopResult:
    """What a run returns: evaluation history (one dict per evaluation) and final counters."""

    evals: list[dict[str, float]]
    queries: int
    rounds: int
    cumulative_regret: float | None
    regret_history: tuple[list[int], list[float]] | None = None
    """``(queries, cumulative regret)`` after every round, when the env's oracle has a latent utility."""


def evaluate(env: Any, agent: Any, config: LoopConfig, queries: int, dump_dir: Path | None) -> dict[str, float]:
    """Greedy responses of the policy on the held-out prompts, scored by the env (no queries spent)."""
    unwrapped = env.unwrapped
    prompts = unwrapped.eval_prompts(config.num_eval_prompts, seed=config.eval_seed)
    start = time.perf_counter()
    responses = agent.generate_greedy(prompts)
    gen_s = time.perf_counter() - start
    result = unwrapped.evaluate(responses, prompts)
    metrics = {f"eval/{k}": float(v) for k, v in result.items() if np.isscalar(v) and k != "num_prompts"}
    metrics["eval/generate_s"] = gen_s
    if dump_dir is not None:
        dump_dir.mkdir(parents=True, exist_ok=True)
        per_item = {k: np.asarray(v).tolist() for k, v in result.items() if not np.isscalar(v)}
        samples = [
            {"prompt": p, "response": r, **{k: v[i] for k, v in per_item.items()}}
            for i, (p, r) in enumerate(zip(prompts, responses))
        ]
        payload = {"queries": queries, "metrics": metrics, "samples": samples}
        (dump_dir / f"queries_{queries:08d}.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return metrics


def evaluate_learner(
    env: Any, agent: Any, config: LoopConfig, queries: int, dump_dir: Path | None, actor_weights: Any = None
) -> dict[str, float]:
    """:func:`evaluate` the learner's current weights.

    When the actor lags the learner (iterative/offline), pass its weights as ``actor_weights``: the
    learner's weights are lent to the policy for the evaluation and the actor's are put back afterwards,
    so data collection is unaffected.
    """
    if actor_weights is not None:
        agent.sync_weights()
    try:
        metrics = evaluate(env, agent, config, queries, dump_dir)
    finally:
        if actor_weights is not None:
            agent.load_policy_weights(actor_weights)
    metrics["misc/queries"] = queries
    return metrics


def run_online(env: Any, agent: Any, config: LoopConfig, run_config: dict[str, Any] | None = None) -> LoopResult:
    """Run the online loop of a DAP agent against a vector dueling env until ``total_queries``.

    ``env`` is a vector env (``gym.make_vec``) whose ``step`` takes ``(responses_a, responses_b)``;
    its ``num_envs`` prompts per round are one batch of duels.
    """
    from oat_agents.learners.checkpoint import CheckpointManager

    rank, world = dist.rank(), dist.world_size()
    is_main = rank == 0
    log_dir = Path(config.log_dir)
    ckpt = CheckpointManager(config.checkpoint_dir or log_dir / "checkpoints", keep_last=config.keep_checkpoints)
    logger = MetricLogger(config, run_config) if is_main else None
    unwrapped = env.unwrapped
    batch = env.num_envs
    round_queries = batch * world  # every rank duels its num_envs prompts each round
    tracker = RegretTracker()  # this rank's pairs
    regret_history: tuple[list[int], list[float]] = ([], [])  # all ranks': (queries, cumulative regret)
    evals: list[dict[str, float]] = []
    rounds, last_eval_at, last_sync_round = 0, -1, 0
    # The weights the actor samples with, kept when it may lag the learner (iterative/offline), so an
    # evaluation of the learner can borrow the policy and give it back unchanged.
    actor_weights = None if config.sync_params_every == 1 else agent.learner.state_dict_for_sync()
    has_regret = True
    # Agents that choose which prompts to query (APL) declare a pool size > num_envs.
    pool_size = int(getattr(agent, "prompt_pool_size", 0) or 0)
    if pool_size and not callable(getattr(unwrapped, "prompt_pool", None)):
        raise TypeError(f"{type(agent).__name__} selects prompts from a pool, but {type(unwrapped).__name__} "
                        "has no prompt_pool()/serve_prompts() (use an oat_env single-turn vector env)")

    obs, _ = env.reset(seed=config.seed + rank)  # distinct prompt streams per rank
    resumed = ckpt.resume(agent.learner) if config.resume else None
    if resumed is not None:
        tag, extra = resumed
        if extra.get("world_size", 1) != world:
            raise ValueError(f"checkpoint {tag} was written by {extra.get('world_size', 1)} ranks; resume it with "
                             f"that many processes, not {world}")
        local = extra["ranks"][rank]
        unwrapped.load_state_dict(local["env"])
        agent.load_state_dict(local["agent"])
        tracker.load_state_dict(local["regret"])
        regret_history = (list(extra["regret_history"][0]), list(extra["regret_history"][1]))
        evals = extra["evals"]
        rounds, last_eval_at, last_sync_round = extra["rounds"], extra["last_eval_at"], extra["last_sync_round"]
        actor_weights = extra["actor_weights"]
        agent.load_policy_weights(actor_weights if actor_weights is not None else agent.learner.state_dict_for_sync())
        obs = unwrapped.current_prompts
        if is_main:
            print(f"resumed from {tag}: round {rounds}, {unwrapped.num_queries * world} queries")
    queries = int(dist.all_reduce_sum([unwrapped.num_queries])[0])

    def log(metrics: dict[str, float], at: int) -> None:
        if logger is not None:
            logger.log(metrics, at)

    def sync() -> float:
        nonlocal actor_weights
        seconds = agent.sync_weights()
        if actor_weights is not None:
            actor_weights = agent.learner.state_dict_for_sync()
        return seconds

    def run_eval() -> None:
        nonlocal last_eval_at
        stale = actor_weights is not None and rounds > last_sync_round
        dump_dir = log_dir / "eval" if is_main else None
        metrics = evaluate_learner(env, agent, config, queries, dump_dir, actor_weights if stale else None)
        evals.append(metrics)
        log(metrics, queries)
        last_eval_at = queries

    def save() -> None:
        local = {"env": unwrapped.state_dict(), "agent": agent.state_dict(), "regret": tracker.state_dict()}
        extra = {
            "world_size": world,
            "ranks": dist.all_gather_object(local),
            "regret_history": regret_history,
            "evals": evals,
            "rounds": rounds,
            "last_eval_at": last_eval_at,
            "last_sync_round": last_sync_round,
            "actor_weights": actor_weights,
            "loop_config": asdict(config),
        }
        ckpt.save(agent.learner, extra_state=extra, tag=f"round_{rounds:07d}")

    bar = None
    if config.progress and is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.total_queries, initial=queries, unit="query", dynamic_ncols=True)
    try:
        if config.eval_query_interval and last_eval_at < 0:
            run_eval()
        while queries + round_queries <= config.total_queries:
            metrics: dict[str, float] = {}
            start = time.perf_counter()
            if pool_size:
                obs = unwrapped.serve_prompts(agent.choose_prompts(unwrapped.prompt_pool(pool_size), batch))
            responses_a, responses_b = agent.act(obs)
            metrics["actor/generate_s"] = time.perf_counter() - start
            start = time.perf_counter()
            obs, rewards, _, _, infos = env.step((responses_a, responses_b))
            metrics["oracle/s"] = time.perf_counter() - start
            feedback = infos["final_info"]
            agent.observe(feedback["label"])
            step_regret = 0.0
            if has_regret:
                try:
                    step_regret = tracker.update(feedback)
                except KeyError:
                    has_regret = False
            metrics["actor/label_mean"] = float(np.mean(rewards))
            metrics["actor/response_chars"] = float(np.mean([len(r) for r in responses_a + responses_b]))
            metrics.update(agent.learn())
            rounds += 1
            if config.sync_params_every and rounds % config.sync_params_every == 0:
                metrics["misc/weight_sync_s"] = sync()
                last_sync_round = rounds
            # One collective per round: all ranks' queries and regret.
            total, round_regret = dist.all_reduce_sum([unwrapped.num_queries, step_regret])
            queries = int(total)
            if has_regret:
                cumulative = (regret_history[1][-1] if regret_history[1] else 0.0) + round_regret
                regret_history[0].append(queries)
                regret_history[1].append(cumulative)
                metrics["regret/step"] = round_regret
                metrics["regret/cumulative"] = cumulative
            metrics["misc/queries"] = queries
            metrics["misc/rounds"] = rounds
            metrics.update({k: v for k, v in unwrapped.last_oracle_metrics.items() if isinstance(v, (int, float))})
            log(metrics, queries)
            if config.eval_query_interval and queries - last_eval_at >= config.eval_query_interval:
                run_eval()
            if config.save_every and rounds % config.save_every == 0:
                save()
            if bar is not None:
                bar.update(queries - bar.n)
                latest = evals[-1] if evals else {}
                post = {"loss": metrics.get("train/loss"), "regret": metrics.get("regret/cumulative")}
                post.update({k.split("/")[1]: latest.get(k) for k in ("eval/win_rate", "eval/accuracy")})
                bar.set_postfix({k: f"{v:.3g}" for k, v in post.items() if v is not None and math.isfinite(v)})
        if config.eval_query_interval and last_eval_at != queries:
            run_eval()
        save()
    finally:
        if bar is not None:
            bar.close()
        if logger is not None:
            logger.close()
    has_history = has_regret and bool(regret_history[0])
    return LoopResult(
        evals=evals,
        queries=queries,
        rounds=rounds,
        cumulative_regret=regret_history[1][-1] if has_history else None,
        regret_history=regret_history if has_history else None,
    )
