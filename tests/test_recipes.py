"""The recipes module, `oat-bench seeds` and the worker pool, without running a full recipe (fast)."""

from __future__ import annotations

import pytest

from oat_agents.bench.seeds import describe, format_line, format_summary, summarize
from oat_agents.bench.seeds import main as seeds_main
from oat_agents.parallel import run_in_processes
from oat_agents.recipes import HEADLINE, MEASURED, RECIPES, RecipeResult, compare_with_measured, run_recipe


def result(seed: int, values: list[float], **extra: float) -> dict:
    return RecipeResult("demo", seed, "eval/accuracy", [0, 100, 200][: len(values)], values, 1.0, extra).to_dict()


def test_recipe_result_start_final_gain():
    r = RecipeResult("demo", 0, "eval/accuracy", [0, 1, 2, 3], [0.2, 0.5, 0.7, 0.9], 1.0)
    assert r.start == 0.2 and r.final == pytest.approx(0.8) and r.gain == pytest.approx(0.6)
    assert r.to_dict()["gain"] == pytest.approx(0.6)


def test_summarize_reports_the_distribution_over_seeds():
    runs = [result(0, [0.2, 0.4, 0.6], regret=1.0), result(1, [0.4, 0.4, 0.4], regret=3.0)]
    s = summarize(runs, min_gain=0.1)
    assert s["gain"]["mean"] == pytest.approx(0.15) and s["gain"]["min"] == pytest.approx(0.0)
    assert s["gain"]["sd"] == pytest.approx(describe([0.3, 0.0])["sd"])
    assert s["regret"]["mean"] == 2.0 and s["improved"] == 1 and s["seeds"] == [0, 1]
    text = format_summary("demo", s)
    assert "seeds gaining >= 0.10: 1/2" in text and "gain" in text
    assert "seed   0  eval/accuracy 0.200 -> 0.500 (+0.300)" in format_line(runs[0])


def test_measured_ranges_are_consistent_and_quoted_by_the_demo():
    assert set(MEASURED) == set(RECIPES) == set(HEADLINE)
    for recipe, m in MEASURED.items():
        assert m["command"].startswith(f"oat-bench seeds --recipe {recipe}") and m["seeds"] >= 5
        for key in ("start", "final", "gain"):
            mean, sd, lo, hi = m[key]
            assert lo <= mean <= hi and sd >= 0, (recipe, key)
    text = compare_with_measured("demo", 0.30, 0.75)
    assert "this run" in text and "(inside)" in text and "oat-bench seeds --recipe demo" in text
    assert "+0.450" in text  # the gain
    assert "OUTSIDE" in compare_with_measured("demo", 0.95, 0.96)


def test_unknown_recipe_and_duplicate_seeds_are_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown recipe 'magic'"):
        run_recipe("magic", 0, str(tmp_path))
    with pytest.raises(SystemExit):
        seeds_main(["--recipe", "demo", "--seeds", "1", "1", "--out", str(tmp_path)])
    assert "--seeds must be distinct" in capsys.readouterr().err


def test_run_in_processes_returns_every_job_whatever_the_worker_count():
    jobs = [(2, 3), (3, 2), (5, 1)]
    one = dict(run_in_processes(pow, jobs, workers=1))
    two = dict(run_in_processes(pow, jobs, workers=2))
    assert one == two == {(2, 3): 8, (3, 2): 9, (5, 1): 5}
    with pytest.raises(ValueError, match="workers"):
        list(run_in_processes(pow, jobs, workers=0))


def test_a_rerun_into_the_same_folder_starts_the_runs_logs_afresh(tmp_path, monkeypatch):
    import oat_agents.recipes as recipes

    seen = []

    def fake_run(recipe, seed, log_dir, progress=False, asynchronous=False):
        path = tmp_path / "logs" / f"{recipe}_seed{seed}" / "metrics.jsonl"
        seen.append(path.exists())  # a leftover from the previous run would be appended to
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"queries": 0}\n')
        return RecipeResult(recipe, seed, "eval/accuracy", [0], [0.5], 0.0)

    monkeypatch.setattr(recipes, "run_recipe", fake_run)
    for _ in range(2):
        recipes.run_recipe_job("dr_grpo", 3, str(tmp_path / "logs"))
    assert seen == [False, False]


def test_only_the_asynchronous_recipes_run_asynchronously(tmp_path):
    from oat_agents.bench.seeds import main
    from oat_agents.recipes import run_recipe

    with pytest.raises(ValueError, match="no asynchronous variant"):
        run_recipe("multiturn", 0, str(tmp_path), asynchronous=True)
    with pytest.raises(SystemExit):
        main(["--recipe", "sea", "--asynchronous", "--out", str(tmp_path)])
