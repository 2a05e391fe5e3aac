"""A child forked after torch's thread pool ran (Gymnasium's AsyncVectorEnv forks) must not hang in torch."""

from __future__ import annotations

import subprocess
import sys

from conftest import subprocess_env

CHILD = """
import os, sys, torch
import oat_env  # installs the after-fork hook
torch.set_num_threads(2)
x = torch.randn(512, 512); (x @ x).sum()  # the parent's intra-op pool has run
pid = os.fork()
if pid == 0:
    y = torch.randn(512, 512); (y @ y).sum()
    print("child threads", torch.get_num_threads(), flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child status", status, "parent threads", torch.get_num_threads())
"""


def test_forked_child_runs_torch_without_hanging():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60,
                         env=subprocess_env(OMP_NUM_THREADS="2"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "child threads 1" in out.stdout and "child status 0 parent threads 2" in out.stdout, out.stdout
