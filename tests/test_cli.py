"""The console scripts' dispatch: ``oat-bench`` lists and runs benchmarks; all three entry points exist."""

import configparser
import importlib
from pathlib import Path

from oat_agents import cli


def test_oat_bench_lists_benchmarks(capsys):
    assert cli.bench([]) == 0
    listed = capsys.readouterr().out
    for name in cli.BENCHMARKS:
        assert name in listed


def test_oat_bench_unknown_name_is_a_clear_error(capsys):
    assert cli.bench(["regrett"]) == 2
    assert "unknown benchmark 'regrett'" in capsys.readouterr().err


def test_oat_bench_passes_arguments_to_the_benchmark(capsys, monkeypatch):
    seen = {}

    def fake_main():
        import sys

        seen["argv"] = list(sys.argv)

    module = importlib.import_module(cli.BENCHMARKS["regret"][0])
    monkeypatch.setattr(module, "main", fake_main)
    assert cli.bench(["regret", "--quick", "--out", "x"]) == 0
    assert seen["argv"] == ["oat-bench regret", "--quick", "--out", "x"]


def test_every_benchmark_module_has_a_main():
    for module_name, _ in cli.BENCHMARKS.values():
        assert callable(importlib.import_module(module_name).main), module_name


def test_console_scripts_point_at_callables():
    parser = configparser.ConfigParser()
    parser.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    scripts = [line.split("=") for line in parser["options.entry_points"]["console_scripts"].strip().splitlines()]
    names = {name.strip() for name, _ in scripts}
    assert names == {"oat-train", "oat-serve-oracle", "oat-bench", "oat-serve-env"}
    for _, target in scripts:
        module, func = target.strip().split(":")
        assert callable(getattr(importlib.import_module(module), func))
