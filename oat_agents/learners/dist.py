"""Process-group setup so a learner works under ``torchrun``/``deepspeed`` or as a bare single process.

``init_distributed`` is the only entry point that creates the default process group; it is
idempotent. When no launcher set ``RANK`` it fills in the single-process environment itself
(``RANK=0, WORLD_SIZE=1, LOCAL_RANK=0, MASTER_ADDR=127.0.0.1, MASTER_PORT=<free port>``), which is what
DeepSpeed needs to run without a launcher.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as tdist

_LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free when asked (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_backend() -> str:
    """``"nccl"`` when CUDA is available, else ``"gloo"``."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def _ensure_launch_env() -> None:
    if "RANK" in os.environ:
        missing = [k for k in _LAUNCH_VARS if k not in os.environ and k != "LOCAL_RANK"]
        if missing:
            raise ValueError(
                f"RANK is set but {missing} are not: launch with torchrun/deepspeed or unset RANK"
            )
        os.environ.setdefault("LOCAL_RANK", os.environ["RANK"])
        return
    os.environ.update(
        RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port())
    )


def init_distributed(backend: str | None = None) -> None:
    """Create the default process group (once) through DeepSpeed's comm layer.

    Args:
        backend: ``"gloo"``/``"nccl"``; ``None`` picks :func:`default_backend`. Ignored (but checked
            against) when the group already exists.
    """
    if backend is not None and backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if tdist.is_available() and tdist.is_initialized():
        current = tdist.get_backend()
        if backend is not None and current != backend:
            raise ValueError(f"process group already initialised with {current!r}, not {backend!r}")
        # Someone else (e.g. vLLM's in-process engine) made the group without launcher variables;
        # DeepSpeed still reads them, so describe the existing group.
        rank, size = str(tdist.get_rank()), str(tdist.get_world_size())
        for key, value in (("RANK", rank), ("WORLD_SIZE", size), ("LOCAL_RANK", rank), ("LOCAL_WORLD_SIZE", size)):
            os.environ.setdefault(key, value)
        _init_deepspeed_comm(current)
        return
    _ensure_launch_env()
    backend = backend or default_backend()
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("backend 'nccl' needs CUDA; use 'gloo' on CPU")
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    _init_deepspeed_comm(backend)


def _init_deepspeed_comm(backend: str) -> None:
    # deepspeed.comm wraps torch.distributed; it reuses an existing default group.
    import deepspeed

    deepspeed.init_distributed(dist_backend=backend, verbose=False)


def is_initialized() -> bool:
    """Whether the default process group exists."""
    return tdist.is_available() and tdist.is_initialized()


def rank() -> int:
    """Global rank (0 when not distributed)."""
    return tdist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return tdist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    """True on global rank 0 (and when not distributed)."""
    return rank() == 0


def barrier() -> None:
    """Wait for all ranks; a no-op when not distributed."""
    if is_initialized() and world_size() > 1:
        tdist.barrier()


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64); the values themselves when not distributed."""
    if world_size() == 1:
        return [float(v) for v in values]
    device = torch.device("cuda", torch.cuda.current_device()) if tdist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    tdist.all_reduce(tensor)
    return tensor.tolist()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` when not distributed."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    tdist.all_gather_object(out, obj)
    return out
