"""Fork safety for torch-backed oracles.

Gymnasium's ``AsyncVectorEnv`` (``gym.make_vec(id, vectorization_mode="async")``) forks its workers by default.
A child forked from a process whose torch intra-op (OpenMP) thread pool has already run inherits a pool whose
threads do not exist, and its first parallel kernel hangs forever (measured here: a 512×512 matmul in the child
never returns; in CI the worker died and the parent saw ``EOFError``). torch's own ``DataLoader`` workers avoid
this by running single-threaded; :func:`install` does the same for every child forked from a process that has
imported torch: after ``os.fork()`` the child calls ``torch.set_num_threads(1)``. Processes that never imported
torch, and ``spawn``/``forkserver`` children (fresh interpreters), are not touched.
"""

from __future__ import annotations

import os
import sys

_installed = False


def _single_threaded_torch_in_child() -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def install() -> None:
    """Register the after-fork hook once per process (``import oat_env`` calls it)."""
    global _installed
    if not _installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_single_threaded_torch_in_child)
        _installed = True
