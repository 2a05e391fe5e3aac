"""Asynchronous mode (``LoopConfig.asynchronous``): the next round's ``act`` runs in an actor thread while the learner
trains on this round's data.

Timeline (``θ_t``: the weights after ``t`` updates; ``step``: the env's batched oracle call)::

    sync:   act_t(θ_t) · step_t · learn_t → θ_{t+1} · sync · act_{t+1}(θ_{t+1}) · step_{t+1} · learn_{t+1} ...
    async:  act_t(θ_t) · step_t · learn_t → θ_{t+1} · sync · step_{t+1} · learn_{t+1} → θ_{t+2} · sync ...
                                  act_{t+1}(θ_t)   (actor thread)          act_{t+2}(θ_{t+1})

so a round costs ``max(generate, learn)`` instead of their sum, and every round (after the first) is sampled by
weights one update behind the learner that trains on it: the off-policyness oat's ``--asynchronous`` has. DAP
losses tolerate it (arXiv 2410.18252); policy gradient corrects it with the truncated importance weight
``w = min(π_old / μ, C)`` (``PGConfig.tis_cap``), where ``μ`` is the sampler's recorded log-prob under ``θ_t``.

Why a thread and not a process: torch releases the GIL inside its kernels, and the actor's policy is its own model
(a copy for ``HFPolicy``, an engine for ``VLLMPolicy``), so the two share nothing that ``learn()`` writes; weights
move learner → policy in the loop's sync, after the actor has finished. Each side then gets its own torch threads
(``async_threads``; by default half the process's when both are on the CPU). Agents declare whether their ``act``
may overlap their ``learn`` (:attr:`~oat_agents.agents.base.Agent.overlaps_act_and_learn`): APL's reads the learner,
so it is refused. The only shared state an HFPolicy touches is the global torch RNG (``fork_rng`` around a seeded
generation); the learners here draw none (no dropout), which keeps async runs reproducible (a learner with dropout
gets a warning). The actor thread uses the main thread's CUDA device (per-thread state in CUDA).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch


def _timed(act: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    return act(), time.perf_counter() - start


def _use_cuda_device(device: int | None) -> None:
    if device is not None:
        torch.cuda.set_device(device)


def _has_dropout(module: Any) -> bool:
    return any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0 for m in module.modules()) or any(
        float(getattr(getattr(module, "config", None), key, 0) or 0) > 0
        for key in ("attention_dropout", "hidden_dropout", "resid_pdrop", "attn_pdrop", "embd_pdrop", "dropout"))


def check_async(agent: Any) -> None:
    """Refuse an agent whose ``act`` cannot run beside its ``learn`` (the error names why and the way out)."""
    if not getattr(agent, "overlaps_act_and_learn", False):
        raise ValueError(
            f"--loop.asynchronous: {type(agent).__name__}.act() cannot overlap its learn() (it reads the learner "
            "while it trains, or does not declare overlaps_act_and_learn); run it synchronously"
        )
    if getattr(agent, "collocate", False):
        raise ValueError(
            "--loop.asynchronous with a collocated policy: it sleeps while the learner trains, so nothing overlaps; "
            "give the policy its own device (collocate=False) or run synchronously"
        )
    module = getattr(getattr(agent, "learner", None), "module", None)
    if module is not None and hasattr(agent.policy, "model") and _has_dropout(module):
        warnings.warn(
            "--loop.asynchronous with a learner that uses dropout and an in-process policy: the policy's seeded "
            "sampling forks and restores the global torch RNG while the learner draws its dropout masks from it, so "
            "runs are not reproducible and masks can repeat; set the model's dropout to 0 or run synchronously",
            stacklevel=3,
        )
    pg = getattr(agent, "pg", None)
    if pg is not None and getattr(pg, "tis_cap", 0) is None:
        warnings.warn(
            "--loop.asynchronous with policy gradient and no importance correction: every round is sampled one update "
            "behind the learner; set PGConfig.tis_cap (e.g. --rl.pg.tis-cap 2.0) to weight each token by "
            "min(π_old/μ, C)", stacklevel=3,
        )


def async_thread_count(agent: Any, threads: int | None) -> int | None:
    """Torch threads for an asynchronous run (``LoopConfig.async_threads``); None = leave them as they are."""
    if threads is not None:
        return threads
    policy_device = getattr(agent.policy, "device", None)
    learner_device = getattr(agent.learner, "device", None)
    on_cpu = [getattr(d, "type", d) == "cpu" for d in (policy_device, learner_device)]
    if all(on_cpu):
        return max(1, torch.get_num_threads() // 2)
    return None


class ActorThread:
    """One background thread that runs ``act`` calls one at a time and hands back ``(action, seconds)``.

    :meth:`run_beside` is the whole protocol: start ``act`` in the thread, run ``learn`` here, wait for both. The
    thread is always waited for, also when ``learn`` raises, so no generation is left running into the next call.
    """

    def __init__(self, threads: int | None = None):
        # CUDA's current device is per host thread: the actor uses the one the main thread was given (torchrun
        # sets LOCAL_RANK's), or `.to("cuda")` in the policy would put rank r's inputs on GPU 0.
        device = torch.cuda.current_device() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oat-actor",
                                            initializer=_use_cuda_device, initargs=(device,))
        self._saved_threads: int | None = None
        if threads is not None:
            # Global in torch: each thread's OpenMP team is sized from it on first use, so actor and learner get
            # `threads` each.
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(threads)

    def run_beside(self, act: Callable[[], Any], learn: Callable[[], dict[str, float]]
                   ) -> tuple[dict[str, float], tuple[Any, float]]:
        """``learn()`` here while ``act()`` runs in the actor thread; returns ``(learn's metrics, (action, act's
        seconds))``. An error of either is raised after both have finished (the learner's first)."""
        future: Future = self._executor.submit(_timed, act)
        try:
            metrics = learn()
        finally:
            # Wait even if learn() failed: the actor must not keep generating into a torn-down loop.
            done = future.exception()
        if done is not None:
            raise done
        return metrics, future.result()

    def close(self) -> None:
        """Stop the thread and restore the torch thread count."""
        self._executor.shutdown(wait=True)
        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None
