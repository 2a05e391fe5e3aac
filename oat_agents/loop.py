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
rank's labels; ``oat-train`` seeds rank ``r``'s agent with ``seed + r`` so ranks sample differently.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oat_agents.learners import dist
from oat_agents.progress import open_progress, update_progress
from oat_env.metrics import RegretTracker


@dataclass
class LoopConfig:
    """Options of :func:`run_online`."""

    total_queries: int = 1024
    """Stop after this many oracle queries, all ranks together (the x-axis of sample-efficiency curves)."""
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
    """Seed of the env's prompt stream and label draws (rank ``r`` of a torchrun job uses ``seed + r``)."""
    progress: bool = True
    """Show progress with the key metrics: a live bar on a terminal, else one line per evaluation (and at most
    every ``progress_interval_s`` seconds) that reads well in a log file."""
    progress_interval_s: float = 30.0
    """Without a terminal: the most seconds between two progress lines."""
    tensorboard: bool = True
    """Write TensorBoard event files to ``log_dir``."""
    wandb_project: str | None = None
    """Also log to this wandb project (needs ``pip install wandb``)."""

    def __post_init__(self) -> None:
        if self.total_queries < 1:
            raise ValueError(f"total_queries must be >= 1, got {self.total_queries}")
        if not self.progress_interval_s > 0:
            raise ValueError(f"progress_interval_s must be > 0, got {self.progress_interval_s}")
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
    # Grouped results (e.g. reasoning-gym mixtures' ``by_task``: {task: {metric: value}}) become
    # ``eval/<key>/<group>/<metric>``; per-item arrays (one value per prompt) go to the sample dump only.
    grouped = {k: v for k, v in result.items() if isinstance(v, dict)}
    for key, groups in grouped.items():
        for group, values in groups.items():
            if isinstance(values, dict):
                metrics.update({f"eval/{key}/{group}/{m}": float(x) for m, x in values.items() if np.isscalar(x)})
    metrics["eval/generate_s"] = gen_s
    if dump_dir is not None:
        dump_dir.mkdir(parents=True, exist_ok=True)
        per_item = {k: np.asarray(v).tolist() for k, v in result.items()
                    if not np.isscalar(v) and k not in grouped and len(v) == len(prompts)}
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


def check_eval_prompts(env: Any, config: LoopConfig) -> None:
    """Refuse, before anything is built or trained, evaluations that ask for more held-out prompts than the env
    has (``env.unwrapped.num_eval_prompts``; unknown counts pass and are checked at the first evaluation)."""
    if not config.eval_query_interval or not config.num_eval_prompts:
        return
    available = getattr(env.unwrapped, "num_eval_prompts", None)
    if available is not None and config.num_eval_prompts > available:
        spec = getattr(env.unwrapped, "spec", None) or getattr(env, "spec", None)
        name = getattr(spec, "id", None) or type(env.unwrapped).__name__
        raise ValueError(
            f"--loop.num-eval-prompts {config.num_eval_prompts} asks for more held-out prompts than {name} has "
            f"({available}); pass --loop.num-eval-prompts {available} (all of them) or fewer"
            + (", or give the env held-out prompts (e.g. eval_prompt_data=)" if available == 0 else "")
            + ", or --loop.eval-query-interval 0 to skip evaluation"
        )


class RoundBookkeeper:
    """What the round-based loops (:func:`run_online`, :func:`~oat_agents.rl_loop.run_online_rl`) share: ranks
    and the all-rank query count, logging, evaluation of the learner, weight sync, checkpoint/resume and
    the progress bar. The loop itself only acts, steps the env and feeds the agent.

    Args:
        env, agent, config, run_config: as the loops take them.
        extra_state: ``() -> (this rank's loop state, state shared by all ranks)``, two picklable dicts the
            loop adds to checkpoints (e.g. its regret tracker); :meth:`start` hands them back on resume.
    """

    def __init__(self, env: Any, agent: Any, config: LoopConfig, run_config: dict[str, Any] | None = None,
                 extra_state: Any = None):
        from oat_agents.learners.checkpoint import CheckpointManager

        check_eval_prompts(env, config)
        self.env, self.agent, self.config = env, agent, config
        self.unwrapped = env.unwrapped
        self.rank, self.world = dist.rank(), dist.world_size()
        self.is_main = self.rank == 0
        self.round_queries = env.num_envs * self.world  # every rank answers its num_envs prompts per round
        self.log_dir = Path(config.log_dir)
        self.ckpt = CheckpointManager(config.checkpoint_dir or self.log_dir / "checkpoints", keep_last=config.keep_checkpoints)
        self.logger = MetricLogger(config, run_config) if self.is_main else None
        self.extra_state = extra_state or (lambda: ({}, {}))
        self.evals: list[dict[str, float]] = []
        self.rounds, self.last_eval_at, self.last_sync_round, self.queries = 0, -1, 0, 0
        # The weights the actor samples with, kept when it may lag the learner (iterative/offline), so an
        # evaluation of the learner can borrow the policy and give it back unchanged.
        self.actor_weights = None if config.sync_params_every == 1 else agent.learner.state_dict_for_sync()
        self.bar = None

    def start(self) -> tuple[Any, tuple[dict[str, Any], dict[str, Any]] | None]:
        """Reset the env (seed + rank: distinct prompt streams), resume when asked, evaluate the start.

        Returns the first observation and, after a resume, the loop's ``(local, shared)`` extra state.
        """
        obs, _ = self.env.reset(seed=self.config.seed + self.rank)
        restored = None
        resumed = self.ckpt.resume(self.agent.learner) if self.config.resume else None
        if resumed is not None:
            tag, extra = resumed
            if not isinstance(extra, dict) or "ranks" not in extra:
                raise ValueError(f"checkpoint {tag} has no per-rank loop state: it was written by an older oat-gym "
                                 "or by another program; resume it with that version or start a new run")
            local = extra["ranks"][self.rank]  # load_checkpoint has checked the world size
            self.unwrapped.load_state_dict(local["env"])
            self.agent.load_state_dict(local["agent"])
            self.evals = extra["evals"]
            self.rounds, self.last_eval_at = extra["rounds"], extra["last_eval_at"]
            self.last_sync_round, self.actor_weights = extra["last_sync_round"], extra["actor_weights"]
            weights = self.actor_weights if self.actor_weights is not None else self.agent.learner.state_dict_for_sync()
            self.agent.load_policy_weights(weights)
            obs = self.unwrapped.current_prompts
            restored = (local["loop"], extra["loop"])
        self.queries = int(dist.all_reduce_sum([self.unwrapped.num_queries])[0])
        if resumed is not None and self.is_main:
            print(f"resumed from {resumed[0]}: round {self.rounds}, {self.queries} queries")
        if self.is_main:
            self.bar = open_progress(self.config, self.queries)
        if self.config.eval_query_interval and self.last_eval_at < 0:
            self.evaluate()
        return obs, restored

    def another_round_fits(self) -> bool:
        """Whether one more round (every rank's prompts) fits in ``total_queries``."""
        return self.queries + self.round_queries <= self.config.total_queries

    def log(self, metrics: dict[str, float], queries: int) -> None:
        if self.logger is not None:
            self.logger.log(metrics, queries)

    def sync(self) -> float:
        seconds = self.agent.sync_weights()
        if self.actor_weights is not None:
            self.actor_weights = self.agent.learner.state_dict_for_sync()
        return seconds

    def evaluate(self) -> None:
        """Evaluate the learner's weights (every rank: ZeRO-3 gathers are collective); rank 0 logs and dumps."""
        stale = self.actor_weights is not None and self.rounds > self.last_sync_round
        dump_dir = self.log_dir / "eval" if self.is_main else None
        metrics = evaluate_learner(self.env, self.agent, self.config, self.queries, dump_dir,
                                   self.actor_weights if stale else None)
        self.evals.append(metrics)
        self.log(metrics, self.queries)
        self.last_eval_at = self.queries

    def end_round(self, metrics: dict[str, float], sums: tuple[float, ...] = ()) -> list[float]:
        """After ``agent.learn()``: count the round, sync weights when due, and add up the queries (and the
        loop's per-rank ``sums``, e.g. regret) over ranks in one all-reduce. Returns the summed ``sums``."""
        self.rounds += 1
        if self.config.sync_params_every and self.rounds % self.config.sync_params_every == 0:
            metrics["misc/weight_sync_s"] = self.sync()
            self.last_sync_round = self.rounds
        total, *summed = dist.all_reduce_sum([self.unwrapped.num_queries, *sums])
        self.queries = int(total)
        metrics["misc/queries"] = self.queries
        metrics["misc/rounds"] = self.rounds
        metrics.update({k: v for k, v in self.unwrapped.last_oracle_metrics.items() if isinstance(v, (int, float))})
        return summed

    def after_round(self, metrics: dict[str, float], bar_keys: tuple[str, ...]) -> None:
        """Log the round, evaluate and checkpoint when due, update the progress bar (``bar_keys`` shown)."""
        self.log(metrics, self.queries)
        if self.config.eval_query_interval and self.queries - self.last_eval_at >= self.config.eval_query_interval:
            self.evaluate()
        if self.config.save_every and self.rounds % self.config.save_every == 0:
            self.save()
        update_progress(self.bar, self.queries, metrics, self.evals, bar_keys)

    def save(self) -> None:
        """Checkpoint (every rank calls it): learner, plus every rank's env/agent/loop state and the shared counters."""
        local_loop, shared_loop = self.extra_state()
        local = {"env": self.unwrapped.state_dict(), "agent": self.agent.state_dict(), "loop": local_loop}
        extra = {
            "world_size": self.world,
            "ranks": dist.all_gather_object(local),
            "loop": shared_loop,
            "evals": self.evals,
            "rounds": self.rounds,
            "last_eval_at": self.last_eval_at,
            "last_sync_round": self.last_sync_round,
            "actor_weights": self.actor_weights,
            "loop_config": asdict(self.config),
        }
        self.ckpt.save(self.agent.learner, extra_state=extra, tag=f"round_{self.rounds:07d}")

    def finish(self) -> None:
        """Final evaluation (unless one just ran) and checkpoint."""
        if self.config.eval_query_interval and self.last_eval_at != self.queries:
            self.evaluate()
        self.save()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.logger is not None:
            self.logger.close()


def run_online(env: Any, agent: Any, config: LoopConfig, run_config: dict[str, Any] | None = None) -> LoopResult:
    """Run the online loop of a DAP agent against a vector dueling env until ``total_queries``.

    ``env`` is a vector env (``gym.make_vec``) whose ``step`` takes ``(responses_a, responses_b)``;
    its ``num_envs`` prompts per round are one batch of duels.
    """
    unwrapped = env.unwrapped
    tracker = RegretTracker()  # this rank's pairs
    regret_history: tuple[list[int], list[float]] = ([], [])  # all ranks': (queries, cumulative regret)
    has_regret = True
    # Agents that choose which prompts to query (APL) declare a pool size > num_envs.
    pool_size = int(getattr(agent, "prompt_pool_size", 0) or 0)
    if pool_size and not callable(getattr(unwrapped, "prompt_pool", None)):
        raise TypeError(f"{type(agent).__name__} selects prompts from a pool, but {type(unwrapped).__name__} "
                        "has no prompt_pool()/serve_prompts() (use an oat_env single-turn vector env)")
    book = RoundBookkeeper(env, agent, config, run_config,
                           extra_state=lambda: ({"regret": tracker.state_dict()}, {"regret_history": regret_history}))
    try:
        obs, restored = book.start()
        if restored is not None:
            tracker.load_state_dict(restored[0]["regret"])
            regret_history = tuple(list(h) for h in restored[1]["regret_history"])
        while book.another_round_fits():
            metrics: dict[str, float] = {}
            start = time.perf_counter()
            if pool_size:
                obs = unwrapped.serve_prompts(agent.choose_prompts(unwrapped.prompt_pool(pool_size), env.num_envs))
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
                except KeyError:  # the oracle has no latent utility: regret is unknown
                    has_regret = False
            metrics["actor/label_mean"] = float(np.mean(rewards))
            metrics["actor/response_chars"] = float(np.mean([len(r) for r in responses_a + responses_b]))
            metrics.update(agent.learn())
            (round_regret,) = book.end_round(metrics, sums=(step_regret,))
            if has_regret:
                cumulative = (regret_history[1][-1] if regret_history[1] else 0.0) + round_regret
                regret_history[0].append(book.queries)
                regret_history[1].append(cumulative)
                metrics["regret/step"] = round_regret
                metrics["regret/cumulative"] = cumulative
            book.after_round(metrics, bar_keys=("train/loss", "regret/cumulative"))
        book.finish()
    finally:
        book.close()
    has_history = has_regret and bool(regret_history[0])
    return LoopResult(
        evals=book.evals,
        queries=book.queries,
        rounds=book.rounds,
        cumulative_regret=regret_history[1][-1] if has_history else None,
        regret_history=regret_history if has_history else None,
    )
