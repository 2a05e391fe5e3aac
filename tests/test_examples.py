import re
import subprocess
import sys
from pathlib import Path

from conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_runs_and_reports_regret():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--rounds", "3", "--num-envs", "4"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    lines = out.stdout.splitlines()
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [int(r[1]) for r in rows] == [4, 8, 12]  # queries per round
    regrets = [float(r[-1]) for r in rows]
    assert regrets == sorted(regrets) and regrets[0] > 0  # cumulative regret never decreases
    assert "oracle queries used: 12" in out.stdout


def test_sea_example_runs_both_agents_on_the_same_budget(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sea_arithmetic.py"), "--queries", "128", "--warmup-steps", "5",
         "--rollout-fraction", "0.5", "--log-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path, env=subprocess_env(OMP_NUM_THREADS="1"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "== passive online DPO ==" in out.stdout and "== SEA (BAI-TS) ==" in out.stdout
    assert len(re.findall(r"oracle queries\s+0\s+128\n", out.stdout)) == 2, out.stdout
    assert (tmp_path / "dap" / "curves.png").exists() and (tmp_path / "dap_sea" / "metrics.jsonl").exists()
