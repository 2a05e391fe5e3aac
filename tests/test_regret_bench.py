"""The regret benchmark's arithmetic testbeds (``demo``, ``arithmetic-wide``): ``oat-bench regret --quick`` end to end
(table, JSON, plot), results that do not depend on the number of worker processes, the CLI's testbed selection,
and the aggregation / ordering verdicts on hand-made curves. The ``linear`` testbed: tests/test_regret_linear.py."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import subprocess_env
from PIL import Image

from oat_agents.bench.regret import (
    METHODS,
    BenchConfig,
    LinearConfig,
    aggregate,
    format_table,
    orderings,
    parse_args,
    run_benchmark,
)

QUICK_METHODS = ("passive", "offline", "bai_ts")


@pytest.mark.slow
def test_oat_bench_regret_quick_writes_table_and_plot(tmp_path):
    oat_bench = Path(sys.executable).parent / "oat-bench"
    out = subprocess.run(
        [str(oat_bench), "regret", "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=subprocess_env(OMP_NUM_THREADS="1"), cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "[6/6]" in out.stdout  # progress: one line per finished run
    table = (tmp_path / "regret_table.md").read_text()
    for method in QUICK_METHODS:
        assert f"| {method} |" in table
    assert "cumulative regret" in table and "anytime regret" in table and "orderings" in table
    assert "| bai_ts | " in table.split("Explorer diagnostics")[1]  # eval/rm_accuracy etc. of the ERM method
    results = json.loads((tmp_path / "regret_results.json").read_text())
    agg = results["aggregate"]
    assert set(agg) == set(QUICK_METHODS)
    for method in QUICK_METHODS:
        runs = results["runs"][method]
        assert len(runs) == 2 and all(r["queries"] == 256 for r in runs)  # same budget, 2 seeds
        assert len(agg[method]["cumulative_regret"]) == 256 // 16
        assert agg[method]["cumulative_regret"][-1] > 0  # a weak policy pays regret
        assert all(se >= 0 for se in agg[method]["anytime_regret_se"])
    assert 0.0 <= agg["bai_ts"]["eval/rm_accuracy"] <= 1.0
    with Image.open(tmp_path / "regret.png") as img:
        assert img.size[0] > 500 and img.size[1] > 300


@pytest.mark.slow
def test_results_do_not_depend_on_the_number_of_workers(tmp_path):
    def run(workers: int) -> dict:
        cfg = BenchConfig.quick(str(tmp_path / f"w{workers}"))
        cfg.queries, cfg.seeds, cfg.methods, cfg.workers, cfg.eval_every = 64, [0], ["passive", "ee_ts"], workers, 32
        return run_benchmark(cfg)["aggregate"]

    one, two = run(1), run(2)
    for method in ("passive", "ee_ts"):
        for key in ("cumulative_regret", "anytime_regret", "accuracy"):
            assert one[method][key] == two[method][key], (method, key)


def _fake_run(anytime: list[float], cumulative: float, seconds: float = 1.0) -> dict:
    queries = [0, 100, 200, 300][: len(anytime)]
    return {"eval_queries": queries, "anytime_regret": anytime, "accuracy": [1 - a for a in anytime],
            "regret_queries": [100, 200, 300], "cumulative_regret": [cumulative / 3, 2 * cumulative / 3, cumulative],
            "queries": 300, "model_pairs": 0, "seconds": seconds}


def test_aggregate_mean_se_auc_and_queries_to_target():
    runs = {
        "passive": [_fake_run([0.5, 0.4, 0.3, 0.2], 30.0), _fake_run([0.5, 0.5, 0.4, 0.2], 34.0)],
        "bai_ts": [_fake_run([0.5, 0.2, 0.1, 0.1], 40.0), _fake_run([0.5, 0.3, 0.2, 0.1], 44.0)],
    }
    agg = aggregate(runs)
    assert agg["passive"]["cumulative_regret"][-1] == pytest.approx(32.0)
    assert agg["passive"]["cumulative_regret_se"][-1] == pytest.approx(np.std([30, 34], ddof=1) / np.sqrt(2))
    # Mean anytime regret over the evaluations after the initial one, then over seeds.
    assert agg["passive"]["anytime_auc"] == pytest.approx(np.mean([0.3, 1.1 / 3]))
    assert agg["bai_ts"]["anytime_auc"] == pytest.approx(np.mean([0.4 / 3, 0.2]))
    # passive's final mean anytime regret is 0.2; bai_ts's mean curve (0.25, 0.15, ...) first reaches it at 200.
    assert agg["bai_ts"]["queries_to_passive_final"] == 200
    verdicts = orderings(agg)
    assert len(verdicts) == 1 and verdicts[0].startswith("SEA (bai_ts) learns faster than passive online DPO: yes")
    table = format_table(agg, BenchConfig(methods=["passive", "bai_ts"]).describe())
    assert "| bai_ts | 42.0 ± 2.0 | 1.312 |" in table


def test_orderings_say_no_when_the_order_is_reversed():
    runs = {
        "ee_ts": [_fake_run([0.5, 0.4], 50.0), _fake_run([0.5, 0.4], 52.0)],
        "bai_ts": [_fake_run([0.5, 0.1], 30.0), _fake_run([0.5, 0.2], 31.0)],
    }
    verdicts = dict(v.split(": ", 1) for v in orderings(aggregate(runs)))
    assert verdicts["E&E-TS has lower cumulative regret than BAI-TS"].startswith("no, the reverse holds")
    assert "ee_ts 51" in verdicts["E&E-TS has lower cumulative regret than BAI-TS"]
    assert verdicts["BAI-TS has lower anytime regret than E&E-TS"].startswith("yes (±1 s.e. apart)")


def test_orderings_never_say_yes_when_the_intervals_overlap():
    runs = {  # bai_ts is lower on average, but its ±1 s.e. interval overlaps passive's
        "passive": [_fake_run([0.5, 0.30], 50.0), _fake_run([0.5, 0.20], 52.0)],
        "bai_ts": [_fake_run([0.5, 0.28], 50.0), _fake_run([0.5, 0.18], 51.0)],
    }
    verdict = orderings(aggregate(runs))[0]
    assert verdict.startswith("SEA (bai_ts) learns faster than passive online DPO: no ordering (±1 s.e. overlap)")


def test_cli_selects_the_testbed_and_keeps_demo_the_default():
    demo = parse_args([])
    assert isinstance(demo, BenchConfig) and demo.testbed == "demo" and demo.env_kwargs["max_digits"] == 1
    assert demo.num_samples == 4 and demo.queries == 32768 and list(demo.methods) == list(METHODS)
    assert {"random", "ids"} <= set(demo.methods)  # the control and IDS are in every full table
    wide = parse_args(["--testbed", "arithmetic-wide"])
    assert wide.env_kwargs["max_digits"] == 2 and wide.num_samples == 8 and len(wide.seeds) >= 5
    linear = parse_args(["--testbed", "linear", "--quick", "--erm-lambda", "10", "--seeds", "3", "4"])
    assert isinstance(linear, LinearConfig) and linear.erm_lambda == 10 and linear.seeds == [3, 4]
    with pytest.raises(SystemExit):
        parse_args(["--testbed", "demo", "--erm-lambda", "10"])  # a linear-only option


def test_bench_config_validation():
    with pytest.raises(ValueError, match="unknown methods"):
        BenchConfig(methods=["passive", "magic"])
    with pytest.raises(ValueError, match="workers"):
        BenchConfig(workers=0)
    with pytest.raises(ValueError, match="at least num_envs"):
        BenchConfig(queries=8)
    with pytest.raises(ValueError, match="unknown testbed"):
        BenchConfig(testbed="sums")
    with pytest.raises(ValueError, match="its own config"):
        BenchConfig(testbed="linear")
