"""What every online loop shares, in one copy: the query budget, ranks, logging, evaluation of the learner, weight
sync, checkpoint/resume and progress (:class:`RoundBookkeeper`), with the loops' options (:class:`LoopConfig`).

The loops themselves (:mod:`~oat_agents.loops.duel`, :mod:`~oat_agents.loops.group_rl`,
:mod:`~oat_agents.loops.multiturn`) only act, step the env and feed the agent; one round of each::

    obs = bookkeeper.start()                          # reset (seed + rank), resume, first evaluation
    while bookkeeper.another_round_fits():
        actions = agent.act(obs); obs, r, ... = env.step(actions); agent.observe(...); agent.learn()
        bookkeeper.count_round(metrics)               # sync when due, queries summed over ranks
        bookkeeper.report_round(metrics, bar_keys)    # log, evaluate and checkpoint when due, progress
    bookkeeper.finish()                               # last evaluation and checkpoint

(the loops call ``bookkeeper.act_and_step(act)`` and ``bookkeeper.learn(agent.learn, act_next)``, which in
asynchronous mode run the next round's ``act`` in an actor thread during ``learn``: :mod:`~oat_agents.loops.overlap`.)

Every ``eval_query_interval`` oracle queries the *learner's* current weights are evaluated greedily on
held-out prompts (``eval/win_rate``, ``eval/anytime_regret``, ``eval/accuracy`` where the env supports
them; ``num_eval_prompts=None`` = every held-out prompt). When the actor is stale (iterative/offline), the
learner weights are put into the policy for the evaluation only and the actor's weights are restored
afterwards, so data collection is unaffected.

Metrics go to TensorBoard (``log_dir``), to ``log_dir/metrics.jsonl``, optionally to wandb, and the
key ones to a progress bar; every single-turn evaluation also dumps its prompts, responses and scores to
``log_dir/eval/queries_<N>.json``. Checkpoints (learner, optimizer, schedule, RNG, buffer, env prompt
stream, counters, history) are written atomically every ``save_every`` rounds and resumed from with
``resume=True``.

Several processes (``torchrun``, DESIGN.md §6): every rank runs its own env and actor and answers
``num_envs`` prompts per round, from its own prompt stream (the env is reset with ``seed + rank``); the
learners are data-parallel (DeepSpeed averages the gradients). ``total_queries`` and the logged
``misc/queries`` count all ranks' queries (summed every round). Every rank evaluates the same held-out
prompts with the same weights; rank 0 alone logs, dumps and shows progress. A checkpoint holds every rank's
env, agent and loop state and must be resumed with the same number of ranks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oat_agents.learners import dist
from oat_agents.loops.overlap import ActorThread, async_thread_count, check_async
from oat_agents.progress import open_progress, update_progress


@dataclass
class LoopConfig:
    """Options of the online loops (:func:`~oat_agents.loops.duel.run_online`,
    :func:`~oat_agents.loops.group_rl.run_online_rl`, :func:`~oat_agents.loops.multiturn.run_multiturn_rl`)."""

    total_queries: int = 1024
    """Stop after this many oracle queries, all ranks together (the x-axis of sample-efficiency curves)."""
    sync_params_every: int = 1
    """Rounds between weight syncs learner → policy: 1 = online, k = iterative, 0 = never (offline)."""
    eval_query_interval: int = 256
    """Evaluate every this many oracle queries (and before the first and after the last round); 0 = never."""
    num_eval_prompts: int | None = 100
    """Held-out prompts per evaluation; None = every held-out prompt of the env (``env.eval_prompts()``)."""
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
    asynchronous: bool = False
    """Overlap acting and learning (oat's ``--asynchronous``): while the learner trains on round ``t``, an actor
    thread generates round ``t+1`` with the weights the policy has then (``θ_t``: one update behind the learner's
    ``θ_{t+1}``, which is synced in before round ``t+2`` is generated). DAP losses are robust to that lag
    (arXiv 2410.18252); policy gradient needs the truncated importance weight ``PGConfig.tis_cap`` (the loop
    warns without it). Budget, evaluation, checkpoints and ranks work as in synchronous mode; a resumed run
    regenerates the round that was in flight. Refused for agents whose ``act`` uses the learner (APL), a
    collocated (sleeping) policy and the multi-turn loop."""
    async_threads: int | None = None
    """Torch intra-op threads in asynchronous mode, each for the actor and the learner; None = half the process's
    threads (at least 1) when both run on the CPU (so the two threads do not oversubscribe the cores), else
    unchanged. Restored when the loop ends."""

    def __post_init__(self) -> None:
        if self.total_queries < 1:
            raise ValueError(f"total_queries must be >= 1, got {self.total_queries}")
        if not self.progress_interval_s > 0:
            raise ValueError(f"progress_interval_s must be > 0, got {self.progress_interval_s}")
        if self.async_threads is not None and self.async_threads < 1:
            raise ValueError(f"async_threads must be >= 1 or None, got {self.async_threads}")
        for name in ("sync_params_every", "eval_query_interval", "save_every", "num_eval_prompts"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
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
    """Greedy responses of the policy on the held-out prompts (``num_eval_prompts``; None = all of them), scored
    by the env (no queries spent)."""
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


Evaluator = Callable[[int, Path | None], dict[str, float]]
"""``(queries, dump_dir) -> eval metrics`` of the policy as currently loaded (what a loop evaluates with)."""


def evaluate_learner(
    env: Any, agent: Any, config: LoopConfig, queries: int, dump_dir: Path | None, actor_weights: Any = None,
    evaluator: Evaluator | None = None,
) -> dict[str, float]:
    """Evaluate the learner's current weights with ``evaluator`` (default: :func:`evaluate`, greedy single-turn).

    When the actor lags the learner (iterative/offline), pass its weights as ``actor_weights``: the
    learner's weights are lent to the policy for the evaluation and the actor's are put back afterwards,
    so data collection is unaffected.
    """
    if evaluator is None:
        def evaluator(at: int, where: Path | None) -> dict[str, float]:
            return evaluate(env, agent, config, at, where)
    if actor_weights is not None:
        agent.sync_weights()
    try:
        metrics = evaluator(queries, dump_dir)
    finally:
        if actor_weights is not None:
            agent.load_policy_weights(actor_weights)
    metrics["misc/queries"] = queries
    return metrics


def check_eval_prompts(env: Any, config: LoopConfig) -> None:
    """Refuse, before anything is built or trained, evaluations that ask for more held-out prompts than the env
    has (``env.unwrapped.num_eval_prompts``; unknown counts pass and are checked at the first evaluation).
    ``num_eval_prompts=None`` (every held-out prompt) is refused when the env has none, or an unbounded
    number (a procedural source that cannot list them: then evaluation needs a count)."""
    if not config.eval_query_interval or config.num_eval_prompts == 0:
        return
    available = getattr(env.unwrapped, "num_eval_prompts", None)
    if config.num_eval_prompts is None:
        if available is None and hasattr(env.unwrapped, "num_eval_prompts"):
            raise ValueError(
                f"--loop.num-eval-prompts None (every held-out prompt) needs an env whose held-out prompts can be "
                f"listed; {_env_name(env)} draws them from an unbounded source: pass a number"
            )
        if available == 0:
            raise ValueError(
                f"--loop.num-eval-prompts None (every held-out prompt): {_env_name(env)} has no held-out prompts; "
                "give the env held-out prompts (e.g. eval_prompt_data=), or --loop.eval-query-interval 0 to skip "
                "evaluation"
            )
        return
    if available is not None and config.num_eval_prompts > available:
        raise ValueError(
            f"--loop.num-eval-prompts {config.num_eval_prompts} asks for more held-out prompts than {_env_name(env)} has "
            f"({available}); pass --loop.num-eval-prompts {available} (all of them) or fewer"
            + (", or give the env held-out prompts (e.g. eval_prompt_data=)" if available == 0 else "")
            + ", or --loop.eval-query-interval 0 to skip evaluation"
        )


def act_and_step(env: Any, act: Callable[[], Any]) -> tuple[Any, tuple, dict[str, float]]:
    """One round of every loop: ``action = act()`` then ``env.step(action)``, each timed. Returns ``(action, the
    step's (obs, rewards, terminated, truncated, infos), {"actor/generate_s", "oracle/s"})``."""
    start = time.perf_counter()
    action = act()
    acted = time.perf_counter()
    result = env.step(action)
    return action, result, {"actor/generate_s": acted - start, "oracle/s": time.perf_counter() - acted}


def _env_name(env: Any) -> str:
    spec = getattr(env.unwrapped, "spec", None) or getattr(env, "spec", None)
    return getattr(spec, "id", None) or type(env.unwrapped).__name__


class RoundBookkeeper:
    """What every online loop shares: ranks and the all-rank query count, logging, evaluation of the learner,
    weight sync, checkpoint/resume and the progress bar. The loop itself only acts, steps the env and feeds
    the agent (module docstring).

    Args:
        env, agent, config, run_config: as the loops take them.
        extra_state: ``() -> (this rank's loop state, state shared by all ranks)``, two picklable dicts the
            loop adds to checkpoints (e.g. its regret tracker); :meth:`start` hands them back on resume.
        count_queries: ``() -> oracle queries this rank's env has spent``; default ``env.unwrapped.num_queries``
            (a ``SyncVectorEnv`` of wrapped single envs sums its sub-envs instead, see the multi-turn loop).
        evaluator: ``(queries, dump_dir) -> eval metrics`` of the policy as loaded; default :func:`evaluate`
            (greedy single-turn responses to the env's held-out prompts).
        checkpoints: False = never checkpoint (a loop whose env or agent state cannot be saved yet).
    """

    def __init__(self, env: Any, agent: Any, config: LoopConfig, run_config: dict[str, Any] | None = None,
                 extra_state: Any = None, count_queries: Callable[[], int] | None = None,
                 evaluator: Evaluator | None = None, checkpoints: bool = True):
        from oat_agents.learners.checkpoint import CheckpointManager

        check_eval_prompts(env, config)
        self.env, self.agent, self.config = env, agent, config
        self.unwrapped = env.unwrapped
        self.count_queries = count_queries or (lambda: self.unwrapped.num_queries)
        self.evaluator = evaluator
        self.checkpoints = checkpoints
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
        self.actor: ActorThread | None = None  # asynchronous mode: generates the next round during learn()
        self._ahead: tuple[Any, float] | None = None  # (action, seconds) of the next round, generated ahead
        self._round_start: float | None = None
        if config.asynchronous:
            check_async(agent)

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
        self.queries = int(dist.all_reduce_sum([self.count_queries()])[0])
        if resumed is not None and self.is_main:
            print(f"resumed from {resumed[0]}: round {self.rounds}, {self.queries} queries")
        if self.config.asynchronous:
            threads = async_thread_count(self.agent, self.config.async_threads)
            self.actor = ActorThread(threads)
            if self.is_main:
                print("asynchronous: the actor generates round t+1 while the learner trains on round t"
                      + (f" ({threads} torch thread(s) each)" if threads is not None else ""), flush=True)
        if self.is_main:
            self.bar = open_progress(self.config, self.queries)
        if self.config.eval_query_interval and self.last_eval_at < 0:
            self.evaluate()
        return obs, restored

    def another_round_fits(self) -> bool:
        """Whether one more round (every rank's prompts) fits in ``total_queries``."""
        return self.queries + self.round_queries <= self.config.total_queries

    def act_and_step(self, act: Callable[[], Any]) -> tuple[Any, tuple, dict[str, float]]:
        """:func:`act_and_step`, except that a round generated ahead (asynchronous mode, during the last
        :meth:`learn`) is stepped instead of calling ``act``; its generation seconds are reported all the same."""
        self._round_start = time.perf_counter()
        if self._ahead is None:
            return act_and_step(self.env, act)
        (action, generate_s), self._ahead = self._ahead, None
        start = time.perf_counter()
        result = self.env.step(action)
        return action, result, {"actor/generate_s": generate_s, "oracle/s": time.perf_counter() - start}

    def learn(self, learn: Callable[[], dict[str, float]], act_next: Callable[[], Any]) -> dict[str, float]:
        """``learn()`` (after ``agent.observe``); in asynchronous mode, when another round fits the budget,
        ``act_next()`` (the next round's act on the observation ``step`` just returned) runs meanwhile in the actor
        thread with the policy's current weights, and the next :meth:`act_and_step` steps its action."""
        # count_round has not yet counted this round: the next one fits iff two more rounds fit.
        next_fits = self.queries + 2 * self.round_queries <= self.config.total_queries
        if self.actor is None or not next_fits:
            return learn()
        metrics, self._ahead = self.actor.run_beside(act_next, learn)
        return metrics

    def log(self, metrics: dict[str, float], queries: int) -> None:
        """Log ``metrics`` at ``queries`` (rank 0 only)."""
        if self.logger is not None:
            self.logger.log(metrics, queries)

    def sync(self) -> float:
        """Push the learner's weights into the policy (and remember them as the actor's); the seconds it took."""
        seconds = self.agent.sync_weights()
        if self.actor_weights is not None:
            self.actor_weights = self.agent.learner.state_dict_for_sync()
        return seconds

    def evaluate(self) -> None:
        """Evaluate the learner's weights (every rank: ZeRO-3 gathers are collective); rank 0 logs and dumps."""
        stale = self.actor_weights is not None and self.rounds > self.last_sync_round
        dump_dir = self.log_dir / "eval" if self.is_main else None
        metrics = evaluate_learner(self.env, self.agent, self.config, self.queries, dump_dir,
                                   self.actor_weights if stale else None, self.evaluator)
        self.evals.append(metrics)
        self.log(metrics, self.queries)
        self.last_eval_at = self.queries

    def count_round(self, metrics: dict[str, float], sums: tuple[float, ...] = (),
                    sync_due: bool | None = None) -> list[float]:
        """After ``agent.learn()``: count the round, sync weights when due, and add up the queries (and the
        loop's per-rank ``sums``, e.g. regret) over ranks in one all-reduce. Returns the summed ``sums``.

        ``sync_due``: whether to sync now; None = every ``sync_params_every`` rounds (a loop that counts its
        syncs in learner updates instead, as the multi-turn one, decides itself)."""
        self.rounds += 1
        if sync_due is None:
            sync_due = bool(self.config.sync_params_every) and self.rounds % self.config.sync_params_every == 0
        if sync_due:
            metrics["misc/weight_sync_s"] = self.sync()
            self.last_sync_round = self.rounds
        total, *summed = dist.all_reduce_sum([self.count_queries(), *sums])
        self.queries = int(total)
        metrics["misc/queries"] = self.queries
        metrics["misc/rounds"] = self.rounds
        if self._round_start is not None:  # act (or the wait for the actor) + step + learn + sync, wall seconds
            metrics["misc/round_s"] = time.perf_counter() - self._round_start
        oracle = getattr(self.unwrapped, "last_oracle_metrics", {})  # a SyncVectorEnv of wrapped envs has none
        metrics.update({k: v for k, v in oracle.items() if isinstance(v, (int, float))})
        return summed

    def report_round(self, metrics: dict[str, float], bar_keys: tuple[str, ...]) -> None:
        """Log the round, evaluate and checkpoint when due, update the progress bar (``bar_keys`` shown)."""
        self.log(metrics, self.queries)
        if self.config.eval_query_interval and self.queries - self.last_eval_at >= self.config.eval_query_interval:
            self.evaluate()
        if self.config.save_every and self.rounds % self.config.save_every == 0:
            self.save()
        update_progress(self.bar, self.queries, metrics, self.evals, bar_keys)

    def save(self) -> None:
        """Checkpoint (every rank calls it): learner, plus every rank's env/agent/loop state and the shared counters."""
        if not self.checkpoints:
            return
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
        """Stop the actor thread, close the progress bar and the logger (also after an error)."""
        if self.actor is not None:
            self.actor.close()
            self.actor = None
        if self.bar is not None:
            self.bar.close()
        if self.logger is not None:
            self.logger.close()
