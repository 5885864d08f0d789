# crisiscomms: `make demo` runs the embedded default, `make test` runs every check.
# Each target installs what it needs (uv, then the locked dependencies).
SHELL := /bin/bash
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
UV := python3 -m uv
RUN := $(UV) run --frozen
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: uv install browser postgres demo test lint unit integration e2e bench clean

uv:
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

install: uv
	$(UV) sync --frozen --python 3.11

demo: install
	$(RUN) crisiscomms demo

lint: install
	$(RUN) ruff check .
	$(RUN) mypy
	$(RUN) crisiscomms lint

# Debian's Chromium for the e2e tests (Playwright drives it; no browser download), with a CJK
# font so the Japanese pages are readable in the screenshots.
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian chromium + chromium-driver for the e2e tests"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver fonts-noto-cjk; }

# PostgreSQL server binaries for the tests' throwaway clusters (initdb + pg_ctl in a temp dir).
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing Debian postgresql for the PostgreSQL tests"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql; }

test: lint browser postgres
	$(RUN) pytest

unit: install
	$(RUN) pytest tests/unit

integration: install postgres
	$(RUN) pytest tests/integration

e2e: install browser
	$(RUN) pytest tests/e2e

# Figures, not asserts: each script prints its own baseline measured in the same run.
bench: install postgres
	$(RUN) python bench/latency.py
	$(RUN) python bench/render.py
	$(RUN) python bench/statuspage.py
	$(RUN) python bench/fanout.py --recipients 1000000 --json
	$(RUN) python bench/fanout.py --recipients 1000000 --backend postgresql --naive 0 --json
	$(RUN) python bench/fanout.py --channel sms --recipients 100000 --json
	$(RUN) python bench/crash_resume.py --recipients 200000 --kills 10 --json
	$(RUN) python bench/faults.py --json
	$(UV) run --frozen --group train python bench/triage.py --json
	$(UV) run --frozen --group train python bench/reactions.py --json
	$(RUN) python bench/dashboard.py --json
	$(RUN) python bench/intake.py --json
	$(RUN) python bench/worker_latency.py --json
	$(RUN) python bench/subscriptions.py --json

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache data
