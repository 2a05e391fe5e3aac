"""The lock is in use: the test venv holds exactly the versions of requirements-lock.txt, and the lock covers
every dependency that setup.cfg declares (so `make test` on a fresh machine resolves what was tested)."""

from __future__ import annotations

import configparser
import importlib.metadata as md
import re
import sys
import sysconfig
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# Installed by the venv itself, by the build backend of the editable install, or the package under test.
NOT_LOCKED = {"oat-gym", "wheel"}


def read_lock(path: Path) -> dict[str, Version]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and re.fullmatch(r"[A-Za-z0-9_.\-]+", name), f"{path.name}: not an exact pin: {line!r}"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def test_lock_files_are_exact_pins_with_the_torch_build():
    for name in ("requirements-lock.txt", "requirements-vllm-lock.txt"):
        pins = read_lock(ROOT / name)
        assert pins["torch"] == Version("2.13.0"), name  # the local CPU build; never another torch
        assert "pip" in pins, name


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="not running in a virtual environment built by make")
def test_installed_versions_are_the_locked_ones():
    import setuptools  # noqa: F401  (as in a full run: it puts setuptools/_vendor on sys.path)

    pins = read_lock(ROOT / "requirements-lock.txt")
    # Only what pip installed into the venv: other sys.path entries hold vendored copies (setuptools puts its
    # _vendor folder, with e.g. packaging 26.3's metadata, on sys.path once something imports it).
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in md.distributions(path=site)}
    wrong = {n: (str(v), str(pins[n])) for n, v in installed.items()
             if n in pins and Version(v.public) != pins[n]}
    assert not wrong, f"installed (version, locked) differ: {wrong}; rerun `make test` or `make lock`"
    unlocked = sorted(n for n in installed if n not in pins and n not in NOT_LOCKED)
    assert not unlocked, (f"installed but not in requirements-lock.txt: {unlocked}; `make lock` adds what "
                          "setup.cfg asks for, anything else does not belong in .venv")


def test_every_declared_dependency_is_locked():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    declared = [line for line in cfg["options"]["install_requires"].splitlines() if line.strip()]
    for extra, lines in cfg["options.extras_require"].items():
        if extra != "vllm":  # the vLLM backend lives in .venv-vllm (requirements-vllm-lock.txt)
            declared += [line for line in lines.splitlines() if line.strip() and not line.startswith("#")]
    pins = read_lock(ROOT / "requirements-lock.txt")
    for text in declared:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (setup.cfg) is not in requirements-lock.txt: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements-lock.txt pins {req.name}=={pins[name]}, outside setup.cfg's {req}: run `make lock`")
