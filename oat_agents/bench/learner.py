"""Overhead of a LearnerEngine step over a bare PyTorch step on the same model and batch.

Baseline (measured in the same run): ``loss = model(x).loss; loss.backward();
clip_grad_norm_(max_grad_norm); AdamW.step(); zero_grad()``. Ours: ``LearnerEngine.train_step`` with
the same AdamW hyper-parameters, the same AdamW kernel (``--adam-impl``, default the engine's: fused) and
clipping (gradient accumulation 1). Both get warmup steps, then the median of the timed steps is compared;
``ratio = ours / baseline`` (target <= 1.10, issue 17).

``--model smollm2`` times the same on SmolLM2-135M-Instruct (fp32, full fine-tuning; :mod:`oat_agents.smollm`)
over a batch of 4 x 256 random tokens (each engine holds its own copy: ~2.5 GB per stage).

    oat-bench learner [--quick] [--stages 0 2 3] [--device cpu|cuda] [--model tiny|smollm2] [--adam-impl fused]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from oat_agents.learners import LearnerConfig, LearnerEngine, init_distributed
from oat_agents.learners.engine import ADAM_IMPLS, adam_kernel_kwargs

TARGET = 1.10


def build_model(hidden: int, layers: int, vocab: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=2048,
    )
    return LlamaForCausalLM(cfg)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_interleaved(
    steps: dict[str, object], n_warmup: int, n_iter: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per step of each candidate, timed round-robin so load drift hits all equally."""
    for _ in range(n_warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(n_iter):
        for name, step in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def bare_step(model: torch.nn.Module, x: torch.Tensor, lr: float, clip: float, adam_impl: str = "fused"):
    """Bare PyTorch step closure with the engine's AdamW param groups and kernel."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
        eps=1e-8,
        **adam_kernel_kwargs(adam_impl),
    )
    model.train()

    def step() -> None:
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def engine_step(
    model: torch.nn.Module, x: torch.Tensor, stage: int, lr: float, clip: float, adam_impl: str = "fused"
):
    """LearnerEngine.train_step closure (same AdamW hyper-parameters, kernel and clipping)."""
    cfg = LearnerConfig(
        zero_stage=stage, learning_rate=lr, micro_batch_size=x.shape[0], max_grad_norm=clip, adam_impl=adam_impl
    )
    eng = LearnerEngine(model, cfg)

    def loss_fn(m, b):
        return m(input_ids=b, labels=b).loss

    return lambda: eng.train_step(loss_fn, x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small model, few steps (smoke run)")
    ap.add_argument("--stages", type=int, nargs="+", default=[0, 2, 3])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", choices=("tiny", "smollm2"), default="tiny",
                    help="tiny: a 5.3M-parameter Llama (--quick: 0.3M); smollm2: SmolLM2-135M-Instruct, batch 4x256")
    ap.add_argument("--adam-impl", choices=ADAM_IMPLS, default=LearnerConfig().adam_impl,
                    help="AdamW kernel of both sides (LearnerConfig.adam_impl)")
    args = ap.parse_args()
    hidden, layers, vocab, batch, seq = (128, 2, 512, 4, 64) if args.quick else (256, 4, 2048, 8, 128)
    warmup, iters = (2, 5) if args.quick else (3, 15)
    lr, clip = 1e-4, 1.0
    device = torch.device(args.device)
    init_distributed()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    if args.model == "smollm2":
        from oat_agents.smollm import load_smollm, smollm_gguf_path

        base, _ = load_smollm(smollm_gguf_path())
        vocab, batch, seq = base.config.vocab_size, 4, 256
        warmup, iters = (1, 2) if args.quick else (1, 5)
        desc = "SmolLM2-135M-Instruct"
    else:
        base = build_model(hidden, layers, vocab)
        desc = f"llama hidden={hidden} layers={layers} vocab={vocab}"
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab, (batch, seq), generator=g).to(device)
    n_params = sum(p.numel() for p in base.parameters())
    print(
        f"model: {desc} params={n_params / 1e6:.2f}M; batch {batch}x{seq}; device {device}; "
        f"AdamW {args.adam_impl}; warmup {warmup}, median of {iters}"
    )
    steps = {"bare": bare_step(copy.deepcopy(base).to(device), x, lr, clip, args.adam_impl)}
    for stage in args.stages:
        steps[f"zero{stage}"] = engine_step(copy.deepcopy(base), x, stage, lr, clip, args.adam_impl)
    med = time_interleaved(steps, warmup, iters, device)
    bare = med["bare"]
    print(f"bare pytorch fwd+bwd+clip+AdamW : {bare * 1e3:8.1f} ms/step")
    worst = 0.0
    for stage in args.stages:
        ours = med[f"zero{stage}"]
        ratio = ours / bare
        worst = max(worst, ratio)
        flag = "ok" if ratio <= TARGET else f"ABOVE target {TARGET}x"
        print(
            f"LearnerEngine ZeRO-{stage} train_step   : {ours * 1e3:8.1f} ms/step  ratio {ratio:.3f}x  {flag}"
        )
    print(f"worst overhead ratio: {worst:.3f}x (target <= {TARGET}x)")


if __name__ == "__main__":
    main()
