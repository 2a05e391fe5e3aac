"""``oat-bench async``: its ratios from known numbers, and one real (short) run of every mode."""

from __future__ import annotations

import pytest

from oat_agents.bench.asynchronous import main, report


def test_the_ratios_are_the_ones_the_docstring_names(capsys):
    runs = {
        "sync": [{"round_s": 2.0, "generate_s": 0.5, "learn_s": 1.4, "per_1k_s": 20.0}],
        "sync-split": [{"round_s": 3.3, "generate_s": 1.0, "learn_s": 2.0, "per_1k_s": 33.0}],
        "async": [{"round_s": 2.2, "generate_s": 1.1, "learn_s": 2.1, "per_1k_s": 22.0}],
    }
    out = report("dpo", runs)
    assert out["async_to_max"] == [pytest.approx(2.2 / 2.0)]
    assert out["sync_to_sum"] == [pytest.approx(3.3 / 3.0)]
    assert out["speedup"] == [pytest.approx(20.0 / 22.0)]
    assert "(target <= 1.15) ✓" in capsys.readouterr().out


def test_a_short_run_of_every_mode(tmp_path):
    out = tmp_path / "async.json"
    results = main(["--workload", "dpo", "--rounds", "3", "--repeats", "1", "--hidden", "32", "--out", str(out)])
    runs = results["dpo"]["runs"]
    assert set(runs) == {"sync", "sync-split", "async"}
    for mode, rs in runs.items():
        assert rs[0]["round_s"] > 0 and rs[0]["generate_s"] > 0 and rs[0]["learn_s"] > 0, mode
    assert out.exists()
    with pytest.raises(SystemExit):
        main(["--rounds", "2"])
