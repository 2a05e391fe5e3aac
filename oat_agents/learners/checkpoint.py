"""Checkpoint/resume of a :class:`LearnerEngine` that loses nothing, written atomically.

Layout of ``ckpt_dir``::

    ckpt_dir/
      latest                  text file holding the newest complete tag (DeepSpeed's own format)
      step_000000010/         one complete checkpoint ("tag")
        mp_rank_00_model_states.pt, *optim_states.pt   DeepSpeed: module, optimizer, LR scheduler,
                                                       step counters, ``client_state``
        rng_state_rank{r}.pt  python/numpy/torch(/cuda) RNG states of rank r
        oat_checkpoint.json   marker written last: {tag, global_step, seq, world_size, saved_at}
      .tmp-step_000000020/    a save in progress (or interrupted): ignored and cleaned up

Atomicity: every rank writes into ``.tmp-<tag>``; after a barrier rank 0 renames it to ``<tag>`` (a
single ``os.replace`` on one filesystem) and only then rewrites ``latest`` through a temp file and
``os.replace``. A crash at any point leaves ``latest`` naming the previous complete checkpoint.
``extra_state`` (any picklable object: replay buffer, query/step counters, prompt-stream position)
travels in DeepSpeed's ``client_state``. With several ranks, ``ckpt_dir`` must be on a filesystem all
ranks share (rank 0 does the rename).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import dist

if TYPE_CHECKING:
    from .engine import LearnerEngine

LATEST = "latest"
MARKER = "oat_checkpoint.json"
TMP_PREFIX = ".tmp-"
_EXTRA_KEY = "oat_extra_state"


def capture_rng_state() -> dict[str, Any]:
    """Snapshot of the python, numpy (global) and torch CPU/CUDA RNG states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("tag") == path.name else None


def list_checkpoints(ckpt_dir: str | Path) -> list[str]:
    """Tags of complete checkpoints in ``ckpt_dir``, oldest first (by save sequence number)."""
    root = Path(ckpt_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        if child.is_dir() and not child.name.startswith(TMP_PREFIX):
            meta = _read_marker(child)
            if meta is not None:
                found.append((int(meta.get("seq", 0)), child.name))
    return [tag for _, tag in sorted(found)]


def latest_tag(ckpt_dir: str | Path) -> str | None:
    """The tag ``latest`` names if that checkpoint is complete, else the newest complete one, else None."""
    root = Path(ckpt_dir)
    try:
        tag = (root / LATEST).read_text().strip()
    except OSError:
        tag = ""
    if tag and _read_marker(root / tag) is not None:
        return tag
    tags = list_checkpoints(root)
    return tags[-1] if tags else None


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _validate_tag(tag: str) -> None:
    if (
        not tag
        or tag in (".", "..")
        or "/" in tag
        or os.sep in tag
        or tag.startswith(TMP_PREFIX)
        or tag == LATEST
    ):
        raise ValueError(f"invalid checkpoint tag {tag!r}")


def save_checkpoint(
    learner: LearnerEngine,
    ckpt_dir: str | Path,
    *,
    extra_state: Any = None,
    tag: str | None = None,
    keep_last: int | None = None,
) -> Path:
    """Save model, optimizer, LR scheduler, step counters, RNG states and ``extra_state`` atomically.

    Every rank must call this. ``tag`` defaults to ``step_<global optimizer step>``; saving an existing
    tag replaces it. ``keep_last`` (>= 1) deletes the oldest complete checkpoints beyond that count
    (never the one just written). Returns the checkpoint directory.
    """
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
    try:
        pickle.dumps(extra_state)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same thing to the caller
        raise TypeError(f"extra_state must be picklable: {exc}") from exc
    root = Path(ckpt_dir)
    tag = tag or f"step_{learner.global_step:09d}"
    _validate_tag(tag)
    tmp = root / f"{TMP_PREFIX}{tag}"
    final = root / tag
    if dist.is_main_process():
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f"{TMP_PREFIX}*"):
            # Leftovers of interrupted saves: never complete, safe to drop.
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    dist.barrier()

    learner.engine.save_checkpoint(
        str(root), tag=tmp.name, client_state={_EXTRA_KEY: extra_state}, save_latest=False
    )
    tmp.mkdir(parents=True, exist_ok=True)  # ranks that DeepSpeed gave nothing to write still need it
    torch.save(capture_rng_state(), tmp / f"rng_state_rank{dist.rank()}.pt")
    dist.barrier()

    if dist.is_main_process():
        seqs = [int((_read_marker(root / t) or {}).get("seq", 0)) for t in list_checkpoints(root)]
        meta = {
            "tag": tag,
            "global_step": learner.global_step,
            "seq": max(seqs, default=0) + 1,
            "world_size": dist.world_size(),
            "saved_at": time.time(),
        }
        _write_text_atomic(tmp / MARKER, json.dumps(meta))
        if final.exists():
            old = root / f"{TMP_PREFIX}old-{tag}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        # Only now is the new checkpoint complete under its final name: point `latest` at it.
        _write_text_atomic(root / LATEST, tag)
        if keep_last is not None:
            for old_tag in list_checkpoints(root)[:-keep_last]:
                if old_tag != tag:
                    shutil.rmtree(root / old_tag, ignore_errors=True)
    dist.barrier()
    return final


def load_checkpoint(
    learner: LearnerEngine,
    ckpt_dir: str | Path,
    *,
    tag: str | None = None,
    load_optimizer: bool = True,
    restore_rng: bool = True,
) -> tuple[str, Any] | None:
    """Restore a checkpoint into ``learner``; returns ``(tag, extra_state)`` or None if there is none.

    ``tag=None`` resumes from :func:`latest_tag`. Every rank must call this. ``load_optimizer=False``
    loads only the module weights (optimizer, scheduler and counters stay fresh).
    """
    root = Path(ckpt_dir)
    if tag is None:
        tag = latest_tag(root)
        if tag is None:
            return None
    _validate_tag(tag)
    marker = _read_marker(root / tag)
    if marker is None:
        raise ValueError(f"{root / tag} is not a complete checkpoint (no valid {MARKER})")
    saved_world = int(marker.get("world_size", dist.world_size()))
    if saved_world != dist.world_size():
        # DeepSpeed cannot re-partition optimizer state, and every rank's env/RNG state is its own.
        raise ValueError(f"checkpoint {root / tag} was written by {saved_world} ranks; resume it with {saved_world} "
                         f"processes, not {dist.world_size()}")
    path, client_state = learner.engine.load_checkpoint(
        str(root),
        tag=tag,
        load_optimizer_states=load_optimizer,
        load_lr_scheduler_states=load_optimizer,
        load_module_only=not load_optimizer,
    )
    if path is None:
        raise ValueError(f"DeepSpeed could not load the checkpoint {root / tag}")
    if load_optimizer:
        learner.apply_adam_impl()  # the checkpoint's param groups carry the kernel flags it was written with
    if restore_rng:
        rng_file = root / tag / f"rng_state_rank{dist.rank()}.pt"
        if not rng_file.exists():
            raise ValueError(f"{rng_file} missing: checkpoint was saved with a different world size")
        restore_rng_state(torch.load(rng_file, weights_only=False))
    return tag, (client_state or {}).get(_EXTRA_KEY)


class CheckpointManager:
    """Periodic saving with rotation and resume-from-latest for one checkpoint directory.

    Args:
        ckpt_dir: directory holding the tags and the ``latest`` pointer.
        keep_last: number of complete checkpoints to keep (None keeps all).
    """

    def __init__(self, ckpt_dir: str | Path, keep_last: int | None = 3) -> None:
        if keep_last is not None and keep_last < 1:
            raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
        self.ckpt_dir = Path(ckpt_dir)
        self.keep_last = keep_last

    def save(self, learner: LearnerEngine, extra_state: Any = None, tag: str | None = None) -> Path:
        """See :func:`save_checkpoint`."""
        return save_checkpoint(
            learner, self.ckpt_dir, extra_state=extra_state, tag=tag, keep_last=self.keep_last
        )

    def resume(self, learner: LearnerEngine) -> tuple[str, Any] | None:
        """Load the latest complete checkpoint, if any: ``(tag, extra_state)`` or None."""
        return load_checkpoint(learner, self.ckpt_dir)

    def latest(self) -> str | None:
        """See :func:`latest_tag`."""
        return latest_tag(self.ckpt_dir)

    def tags(self) -> list[str]:
        """See :func:`list_checkpoints`."""
        return list_checkpoints(self.ckpt_dir)
