# crisiscomms: `make demo` runs the embedded default, `make test` runs every check.
# Each target installs what it needs (uv, then the locked dependencies).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
RUN := $(UV) run --frozen

.PHONY: install demo test lint unit integration bench clean

$(UV):
	python3 -m pip install --user --quiet uv || pip install --quiet uv

install: | $(UV)
	$(UV) sync --frozen --python 3.11

demo: install
	$(RUN) crisiscomms demo

lint: install
	$(RUN) ruff check .
	$(RUN) mypy

test: lint
	$(RUN) pytest

unit: install
	$(RUN) pytest tests/unit

integration: install
	$(RUN) pytest tests/integration

bench: install
	$(RUN) python bench/latency.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache data
