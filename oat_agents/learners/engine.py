"""DeepSpeed learner engine: the trainable policy, its optimizer/schedule, and a frozen reference.

``LearnerEngine`` wraps ``deepspeed.initialize`` (ZeRO 0-3; CPU with gloo or GPU with NCCL; one
process without a launcher or many under ``torchrun``/``deepspeed``) with

* a client ``torch.optim.AdamW`` (decoupled weight decay on matrices only, i.e. parameters with
  ``ndim >= 2``; biases and norm weights are not decayed) so no DeepSpeed optimizer op is JIT-built;
* a ``torch.optim.lr_scheduler.LambdaLR`` whose multiplier comes from :mod:`.schedules`; DeepSpeed
  steps it once per *optimizer* step (i.e. per accumulation boundary);
* gradient accumulation with DeepSpeed's semantics: each ``backward(loss)`` adds
  ``grad(loss) / gradient_accumulation_steps`` (and, data-parallel, the mean over ranks); the optimizer
  steps on every ``gradient_accumulation_steps``-th ``step()`` call, after clipping the global gradient
  norm to ``max_grad_norm``. ``backward(loss, share=s)`` adds ``s · grad(loss)`` instead: a caller that
  splits one optimizer step into micro-batches passes each micro-batch's share of the step's loss, so the
  accumulated gradient is the step's whole-batch gradient however the micro-batches are filled. A
  micro-step other than the boundary one may skip ``backward`` (an empty micro-batch), on every rank
  alike: ZeRO-2/3 reduce gradients in each backward, every stage at the boundary one;
* a frozen reference model for KL-regularised objectives (``ref_logps``, at a given temperature);
* ``state_dict_for_sync`` (full, gathered, LoRA-merged CPU weights with Hugging Face names) for
  policy weight sync, and ``save_pretrained``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from oat_agents.algorithms.logprobs import token_logprobs
from oat_agents.algorithms.shared_prompt import check_packable

from . import dist
from .schedules import SCHEDULES, make_lr_lambda

DTYPES = ("fp32", "bf16")
ADAM_IMPLS = ("fused", "foreach", "for_loop")


@dataclass
class LearnerConfig:
    """Options of the learner (DeepSpeed engine, optimizer, schedule, reference model, LoRA)."""

    zero_stage: int = 2
    """ZeRO stage: 0 (plain data parallel), 1 (shard optimizer state), 2 (+ gradients), 3 (+ parameters)."""
    dtype: str = "fp32"
    """Training precision: "fp32" or "bf16" (bf16 weights/activations with fp32 master weights in DeepSpeed)."""
    micro_batch_size: int = 1
    """Examples per forward/backward on each rank (DeepSpeed ``train_micro_batch_size_per_gpu``)."""
    gradient_accumulation_steps: int = 1
    """Micro-batches accumulated per optimizer step; global batch = micro x accumulation x world size."""
    max_grad_norm: float = 1.0
    """Clip the global L2 gradient norm to this value before each optimizer step; 0 disables clipping."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward (HF ``gradient_checkpointing_enable``, non-reentrant) to save memory."""
    learning_rate: float = 5e-7
    """Peak (base) learning rate of AdamW."""
    lr_schedule: str = "constant"
    """Learning-rate schedule: "constant" or "cosine" (decay to ``min_lr_ratio`` x lr at ``total_steps``)."""
    min_lr_ratio: float = 0.0
    """Cosine only: final learning rate as a fraction of ``learning_rate``."""
    warmup_steps: int = 0
    """Linear warmup length in optimizer steps (both schedules); takes precedence over ``warmup_ratio``."""
    warmup_ratio: float = 0.0
    """Warmup as a fraction of ``total_steps`` (used when ``warmup_steps`` is 0)."""
    total_steps: int | None = None
    """Total optimizer steps; required by the cosine schedule and by ``warmup_ratio``."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay, applied to parameters with ndim >= 2 only."""
    adam_betas: tuple[float, float] = (0.9, 0.95)
    """AdamW (beta1, beta2)."""
    adam_eps: float = 1e-8
    """AdamW epsilon added to the denominator."""
    adam_impl: str = "fused"
    """torch AdamW kernel: "fused" (one pass per tensor; what TRL's default ``adamw_torch_fused`` uses), "foreach"
    or "for_loop" (torch's CPU default). Same update rule; they differ only in float rounding (~1e-8). On CPU
    fused is ~3.5x faster than for_loop on SmolLM2-135M (0.25 s vs 0.9 s per step)."""
    share_prompt: bool = False
    """Compute each prompt once per forward pass for all the responses that continue it (DPO's chosen and
    rejected, a GRPO group): the rows are packed behind one copy of the prompt with a block-causal 4D mask
    (:mod:`oat_agents.algorithms.shared_prompt`). The same log-probs and gradients up to float rounding, with
    ``P + Σ S`` instead of ``Σ (P + S)`` tokens; a batch that would cost more packed (longer rows: attention
    grows with their square; ``shared_prompt.packing_pays``) takes the plain pass. The policy-gradient agents then shuffle whole prompt groups between mini-batches. Needs
    attention that takes a custom mask ("sdpa" or "eager"), ``position_ids`` and no sliding window (checked when
    the engine is built). Off by default: with short prompts the dense mask costs more than it saves. SmolLM2-135M,
    one thread: the DPO step of 4 TL;DR pairs 12–17 s instead of 21–28 s, the Dr.GRPO step of 2 x 4 GSM8K samples
    5.1–5.6 s instead of 8.6–9.6 s (README, "Shared prompts")."""
    ref_offload: bool = False
    """Keep the frozen reference model on CPU (ZeRO-3: parameters offloaded to CPU) to save accelerator memory."""
    lora_rank: int = 0
    """LoRA rank via peft; 0 trains all weights. Synced/saved weights are always merged (W + B A alpha/r)."""
    lora_alpha: int = 16
    """LoRA scaling numerator: the adapter update is ``(alpha / rank) * B @ A``."""
    lora_target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    """Module names (suffixes) that get LoRA adapters."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA branch input."""
    seed: int = 42
    """Seed for python, numpy and torch RNGs, set when the engine is built (before LoRA init)."""

    def __post_init__(self) -> None:
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        for name in ("micro_batch_size", "gradient_accumulation_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0 (0 disables clipping), got {self.max_grad_norm}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        if self.adam_impl not in ADAM_IMPLS:
            raise ValueError(f"adam_impl must be one of {ADAM_IMPLS}, got {self.adam_impl!r}")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0 (0 disables LoRA), got {self.lora_rank}")
        if self.lora_rank > 0 and not self.lora_target_modules:
            raise ValueError("lora_target_modules must not be empty when lora_rank > 0")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        # Fails early (not at the first step) on an inconsistent schedule.
        self.lr_lambda()

    def lr_lambda(self) -> Callable[[int], float]:
        """The LR multiplier ``optimizer step -> factor`` described by this config."""
        return make_lr_lambda(
            self.lr_schedule,
            total_steps=self.total_steps,
            warmup_steps=self.warmup_steps,
            warmup_ratio=self.warmup_ratio,
            min_lr_ratio=self.min_lr_ratio,
        )


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _is_lora_layer(module: nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return isinstance(module, LoraLayer)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


class LearnerEngine:
    """A DeepSpeed-trained causal LM with a frozen reference (see module docstring).

    Args:
        model: a Hugging Face ``PreTrainedModel`` (e.g. ``LlamaForCausalLM``) on CPU, fp32.
        config: a :class:`LearnerConfig`.
        ref_model: optional frozen reference for ``ref_logps``. With LoRA and no ``ref_model``, the
            reference is the base model with the adapters disabled (no extra copy).
    """

    def __init__(self, model: nn.Module, config: LearnerConfig, ref_model: nn.Module | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(config, LearnerConfig):
            raise TypeError(f"config must be a LearnerConfig, got {type(config).__name__}")
        if ref_model is not None and not isinstance(ref_model, nn.Module):
            raise TypeError(f"ref_model must be a torch.nn.Module or None, got {type(ref_model).__name__}")
        if config.share_prompt:  # refused before anything is built
            check_packable(model)
            if ref_model is not None:
                check_packable(ref_model)
        import deepspeed

        self.config = config
        dist.init_distributed()
        seed_everything(config.seed)

        if config.gradient_checkpointing:
            # transformers 5 renamed gradient_checkpointing_enable (deprecated) to activation_checkpointing_enable.
            kwargs = {"use_reentrant": False}
            if hasattr(model, "activation_checkpointing_enable"):
                model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            elif hasattr(model, "gradient_checkpointing_enable"):
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
            else:
                raise TypeError(
                    "gradient_checkpointing needs a Hugging Face model (activation_checkpointing_enable)"
                )
            if getattr(model, "config", None) is not None:
                model.config.use_cache = False
        self.is_lora = config.lora_rank > 0
        if self.is_lora:
            model = self._apply_lora(model)

        optimizer = torch.optim.AdamW(
            self._param_groups(model),
            lr=config.learning_rate,
            betas=tuple(config.adam_betas),
            eps=config.adam_eps,
            **adam_kernel_kwargs(config.adam_impl),
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, config.lr_lambda())
        self.engine, self.optimizer, _, self.lr_scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=self.deepspeed_config()
        )
        self.device = torch.device(self.engine.device)
        if self._plain_fp32_zero0() and dist.world_size() == 1:
            # One rank: DeepSpeed's all-reduce of the gradients is the identity, but it still flattens every
            # gradient into a bucket and copies it back (~1 s per step on SmolLM2-135M). Skip it.
            self.engine.enable_backward_allreduce = False
        self.ref_model = self._setup_ref(ref_model) if ref_model is not None else None

    # ------------------------------------------------------------------ setup
    def deepspeed_config(self) -> dict[str, Any]:
        """The DeepSpeed config dict this engine is (or will be) initialised with."""
        c = self.config
        # contiguous_gradients copies every gradient into one preallocated buffer (against accelerator-memory
        # fragmentation, and for the reduce buckets). One CPU rank has neither concern, and the copy is a full pass over
        # the gradients (SmolLM2-135M ZeRO-2: 1.15x -> 1.11x of bare PyTorch, `oat-bench learner --model smollm2`).
        contiguous = not (dist.world_size() == 1 and _accelerator_is_cpu())
        zero: dict[str, Any] = {"stage": c.zero_stage, "contiguous_gradients": contiguous, "overlap_comm": False}
        if c.zero_stage == 3:
            # Small params (norms, biases) stay replicated: fewer tiny all-gathers per forward.
            zero["stage3_param_persistence_threshold"] = 10_000
        return {
            "train_micro_batch_size_per_gpu": c.micro_batch_size,
            "gradient_accumulation_steps": c.gradient_accumulation_steps,
            "train_batch_size": c.micro_batch_size * c.gradient_accumulation_steps * dist.world_size(),
            # fp32 ZeRO-0: step() clips itself (one foreach pass that also gives the reported norm).
            "gradient_clipping": 0.0 if self._plain_fp32_zero0() else float(c.max_grad_norm),
            "zero_optimization": zero,
            "bf16": {"enabled": c.dtype == "bf16"},
            # Our client AdamW is a plain torch optimizer; ZeRO wraps it fine.
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 10**12,
            "wall_clock_breakdown": False,
        }

    def ref_deepspeed_config(self) -> dict[str, Any]:
        """DeepSpeed config of the frozen reference (used only with ZeRO-3: partitioned, optionally offloaded)."""
        c = self.config
        zero: dict[str, Any] = {"stage": 3, "stage3_param_persistence_threshold": 10_000}
        if c.ref_offload:
            zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
        return {
            "train_micro_batch_size_per_gpu": c.micro_batch_size,
            "gradient_accumulation_steps": 1,
            "train_batch_size": c.micro_batch_size * dist.world_size(),
            "zero_optimization": zero,
            "bf16": {"enabled": c.dtype == "bf16"},
            "steps_per_print": 10**12,
        }

    def _plain_fp32_zero0(self) -> bool:
        """ZeRO-0 in fp32: DeepSpeed steps our AdamW directly (no ZeRO/bf16 optimizer wrapper around it)."""
        return self.config.zero_stage == 0 and self.config.dtype == "fp32"

    def _apply_lora(self, model: nn.Module) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        c = self.config
        lora_cfg = LoraConfig(
            r=c.lora_rank,
            lora_alpha=c.lora_alpha,
            target_modules=list(c.lora_target_modules),
            lora_dropout=c.lora_dropout,
            bias="none",
            task_type="CAUSAL_LM",
        )
        return get_peft_model(model, lora_cfg)

    def _param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        decay, no_decay = [], []
        for p in model.parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
        if not decay and not no_decay:
            raise ValueError("model has no trainable parameters")
        groups = [{"params": decay, "weight_decay": self.config.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        return [g for g in groups if g["params"]]

    def _setup_ref(self, ref_model: nn.Module) -> nn.Module:
        ref_model.requires_grad_(False)
        ref_model.eval()
        if self.config.zero_stage == 3:
            import deepspeed

            ref_engine, *_ = deepspeed.initialize(model=ref_model, config=self.ref_deepspeed_config())
            ref_engine.eval()
            return ref_engine
        dtype = torch.bfloat16 if self.config.dtype == "bf16" else torch.float32
        device = torch.device("cpu") if self.config.ref_offload else self.device
        return ref_model.to(device=device, dtype=dtype)

    # ------------------------------------------------------------------ training
    @property
    def module(self) -> nn.Module:
        """The trained module (a peft model under LoRA); parameters are partitioned under ZeRO-3."""
        return self.engine.module

    @property
    def global_step(self) -> int:
        """Optimizer steps taken so far."""
        return int(self.engine.global_steps)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Forward through the DeepSpeed engine (same signature as the wrapped model)."""
        return self.engine(*args, **kwargs)

    def train(self, mode: bool = True) -> LearnerEngine:
        """Set train (dropout on) or eval mode on the trained module; returns self."""
        self.engine.train(mode)
        return self

    def apply_adam_impl(self) -> None:
        """Put ``config.adam_impl``'s kernel flags back on the AdamW param groups: ``Optimizer.load_state_dict``
        (a resume) replaces them with the checkpoint's, which may have been written with another kernel."""
        flags = adam_kernel_kwargs(self.config.adam_impl)
        inner = getattr(self.optimizer, "optimizer", self.optimizer)  # ZeRO/bf16 wrappers hold the torch AdamW
        for group in inner.param_groups:
            group["fused"] = flags.get("fused")
            group["foreach"] = flags.get("foreach")

    def current_lr(self) -> float:
        """Learning rate the next optimizer step will use."""
        return float(self.optimizer.param_groups[0]["lr"])

    def is_accumulation_boundary(self) -> bool:
        """Whether the next ``step()`` call applies the optimizer."""
        return bool(self.engine.is_gradient_accumulation_boundary())

    def backward(self, loss: torch.Tensor, share: float | None = None) -> None:
        """Accumulate the gradient of a micro-batch loss.

        Args:
            loss: scalar loss of the micro-batch.
            share: this micro-batch's share of the optimizer step's loss, e.g. its valid tokens or pairs
                over the step's when ``loss`` is a mean over its own: the gradient added is
                ``share · grad(loss)`` (so the shares of a step summing to 1 give the whole-batch gradient).
                None: DeepSpeed's ``grad(loss) / gradient_accumulation_steps``. Data-parallel, DeepSpeed
                then averages over ranks either way.
        """
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise ValueError("backward expects a scalar loss tensor")
        if not torch.isfinite(loss.detach()).item():
            raise ValueError(f"non-finite loss {loss.item()}")
        if share is not None:
            if not (math.isfinite(share) and share >= 0):
                raise ValueError(f"share must be finite and >= 0, got {share}")
            # engine.backward divides by gradient_accumulation_steps; undo it so `share` is the weight.
            loss = loss * (share * self.config.gradient_accumulation_steps)
        self.engine.backward(loss)

    def _own_grad_norm(self, clip: float) -> float:
        """The global L2 norm of the gradients, before clipping them to ``clip`` when ``clip > 0`` (0: measure only).

        fp32 ZeRO-0 clips here: DeepSpeed's clipping is off in that mode (``deepspeed_config``), since its
        per-parameter norm loop plus a second pass for the reported norm cost ~3 passes over the gradients;
        ``clip_grad_norm_`` (foreach) is one norm pass and one scaling pass, with DeepSpeed's rule
        (``g *= min(1, max_norm / (norm + 1e-6))``). Gradients are already all-reduced at the boundary backward, so
        the local norm is the global one.
        """
        params = grads_params(self.module)
        if not params:
            return 0.0
        if clip > 0:
            return float(torch.nn.utils.clip_grad_norm_(params, clip, foreach=True))
        return float(torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True))

    def step(self) -> dict[str, float]:
        """End a micro-step; on an accumulation boundary clip, step AdamW and the LR schedule.

        Returns ``{}`` between boundaries, else ``train/grad_norm`` (global L2 norm before clipping),
        ``train/lr`` (the rate this step used) and ``train/grad_clipped`` (1.0 if the norm exceeded
        ``max_grad_norm``).
        """
        if not self.is_accumulation_boundary():
            self.engine.step()
            return {}
        lr = self.current_lr()
        own_norm = None
        if self._plain_fp32_zero0():
            own_norm = self._own_grad_norm(self.config.max_grad_norm)  # and clips: DeepSpeed does not, here
        elif self.config.zero_stage == 0:
            own_norm = self._own_grad_norm(0.0)  # bf16 ZeRO-0 normally reports its norm; the fallback if it does not
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        norm = float(norm) if norm is not None else own_norm
        if norm is None:
            norm = float("nan")
        clip = self.config.max_grad_norm
        return {
            "train/grad_norm": norm,
            "train/lr": lr,
            "train/grad_clipped": float(clip > 0 and math.isfinite(norm) and norm > clip),
        }

    def train_step(
        self,
        loss_fn: Callable[[Any, Any], torch.Tensor | tuple[torch.Tensor, Mapping[str, float]]],
        batch: Any,
    ) -> dict[str, float]:
        """One micro-step: ``loss_fn(model, batch)`` -> backward -> step.

        ``loss_fn`` receives the forward-callable engine and ``batch`` moved to the engine's device, and
        returns a scalar loss or ``(loss, metrics)``. Returns ``train/loss`` plus the loss_fn metrics and,
        on an accumulation boundary, the metrics of :meth:`step`.
        """
        self.engine.train()
        out = loss_fn(self.engine, _to_device(batch, self.device))
        loss, extra = out if isinstance(out, tuple) else (out, {})
        self.backward(loss)
        metrics = {"train/loss": float(loss.detach())}
        metrics.update({k: float(v) for k, v in extra.items()})
        metrics.update(self.step())
        return metrics

    # ------------------------------------------------------------------ reference
    @torch.no_grad()
    def ref_logps(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, temperature: float = 1.0,
        response_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-token reference log-probs ``(B, L)`` at ``temperature``, on the engine's device, in the one
        convention of :func:`oat_agents.algorithms.logprobs.token_logprobs` (aligned with ``input_ids``; 0 at
        position 0 and, with ``response_mask``, off the response). A KL to the reference must use the temperature
        of the policy log-probs it is compared with (RL: the sampling temperature), or it is non-zero even when
        policy = reference.

        Uses ``ref_model`` if given, else (LoRA) the base model with adapters disabled.
        """
        if self.ref_model is None:
            if not self.is_lora:
                raise ValueError("no reference model: pass ref_model= to LearnerEngine (or use LoRA)")
            was_training = self.engine.training
            self.engine.eval()
            try:
                with self.module.disable_adapter():
                    return token_logprobs(self.engine, input_ids.to(self.device), _maybe_to(attention_mask, self.device),
                                          temperature, _maybe_to(response_mask, self.device),
                                          share_prompt=self.config.share_prompt)[0]
            finally:
                self.engine.train(was_training)
        ref_device = torch.device(
            getattr(self.ref_model, "device", None) or next(self.ref_model.parameters()).device
        )
        logps, _ = token_logprobs(self.ref_model, input_ids.to(ref_device), _maybe_to(attention_mask, ref_device),
                                  temperature, _maybe_to(response_mask, ref_device), share_prompt=self.config.share_prompt)
        return logps.to(self.device)

    @torch.no_grad()
    def policy_logps(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, temperature: float = 1.0,
        response_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-token log-probs ``(B, L)`` of the current policy at ``temperature``, without gradient (e.g. PPO old
        log-probs); the convention of :meth:`ref_logps`."""
        return token_logprobs(self.engine, input_ids.to(self.device), _maybe_to(attention_mask, self.device),
                              temperature, _maybe_to(response_mask, self.device), share_prompt=self.config.share_prompt)[0]

    # ------------------------------------------------------------------ weights out
    def hf_model(self) -> nn.Module:
        """The underlying Hugging Face model (the peft base model under LoRA)."""
        return self.module.get_base_model() if self.is_lora else self.module

    @contextmanager
    def _gathered(self, params: list[nn.Parameter]) -> Iterator[None]:
        if self.config.zero_stage == 3 and params:
            import deepspeed

            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                yield
        else:
            with nullcontext():
                yield

    def _iter_full_state(self, module: nn.Module, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
        if self.is_lora and _is_lora_layer(module):
            with self._gathered(list(module.parameters())):
                base = module.get_base_layer()
                weight = base.weight.detach().clone()
                for name in module.active_adapters:
                    if name in module.lora_A:
                        weight += module.get_delta_weight(name).to(weight.dtype)
                yield prefix + "weight", weight.cpu()
                if getattr(base, "bias", None) is not None:
                    yield prefix + "bias", base.bias.detach().cpu().clone()
            return
        own = list(module.named_parameters(recurse=False))
        with self._gathered([p for _, p in own]):
            for name, p in own:
                yield prefix + name, p.detach().cpu().clone()
        non_persistent = getattr(module, "_non_persistent_buffers_set", set())
        for name, b in module.named_buffers(recurse=False):
            if name not in non_persistent:
                yield prefix + name, b.detach().cpu().clone()
        for name, child in module.named_children():
            yield from self._iter_full_state(child, prefix + name + ".")

    def state_dict_for_sync(self) -> dict[str, torch.Tensor]:
        """Full CPU weights with Hugging Face names (``model.layers.0.self_attn.q_proj.weight``...).

        ZeRO-3 parameters are gathered module by module (every rank must call this); LoRA adapters
        are merged, ``W' = W + (alpha / r) * B @ A``, so the result loads into the plain base
        architecture (``policy.load_weights``). Tied weights appear under every name.
        """
        return dict(self._iter_full_state(self.hf_model(), ""))

    def save_pretrained(self, output_dir: str | Path) -> Path:
        """Write a loadable HF checkpoint (config + safetensors of :meth:`state_dict_for_sync`) on rank 0.

        Every rank must call this (ZeRO-3 gathering is collective).
        """
        from safetensors.torch import save_file

        output_dir = Path(output_dir)
        state = self.state_dict_for_sync()
        if dist.is_main_process():
            output_dir.mkdir(parents=True, exist_ok=True)
            hf = self.hf_model()
            hf.config.save_pretrained(output_dir)
            if getattr(hf, "generation_config", None) is not None:
                hf.generation_config.save_pretrained(output_dir)
            # Clones are separate storages, so tied weights serialise fine (loaders re-tie them).
            save_file(
                {k: v.contiguous() for k, v in state.items()},
                str(output_dir / "model.safetensors"),
                metadata={"format": "pt"},
            )
        dist.barrier()
        return output_dir

    def config_dict(self) -> dict[str, Any]:
        """The learner config as a plain dict (for logging)."""
        return asdict(self.config)


def _accelerator_is_cpu() -> bool:
    from deepspeed.accelerator import get_accelerator

    return get_accelerator().device_name() == "cpu"


def adam_kernel_kwargs(impl: str) -> dict[str, bool]:
    """``torch.optim.AdamW`` keyword arguments selecting the kernel named by ``LearnerConfig.adam_impl``."""
    if impl not in ADAM_IMPLS:
        raise ValueError(f"adam_impl must be one of {ADAM_IMPLS}, got {impl!r}")
    return {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}[impl]


def grads_params(module: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``module`` that hold a gradient."""
    return [p for p in module.parameters() if p.grad is not None]


def _maybe_to(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device)
