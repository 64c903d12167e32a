# Two entry points for a fresh machine with Python 3.11, make and apt:
#   make demo   a local node in front of demo backends it starts, serving traffic
#   make test   the whole suite: ruff, mypy, pytest
PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test bench clean

# Installed as a user gets it (not editable): the HTTP data plane compiled with mypyc,
# which wants a C compiler and Python's headers (without them it stays pure Python; see
# setup.py). Any change under src/ installs again, so the tests run this checkout's code.
SOURCES := pyproject.toml setup.py $(shell find src -name '*.py' -o -name '*.typed')

$(BIN)/.installed: $(SOURCES)
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON)"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { apt-get update -qq && apt-get install -y -q python3-venv && $(PYTHON) -m venv $(VENV); }
	@command -v cc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -q gcc || true; }
	@test -f "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" \
		|| { apt-get update -qq && apt-get install -y -q $(PYTHON)-dev || true; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q '.[dev]'
	@$(BIN)/ninelives --version
	touch $@

demo: $(BIN)/.installed
	$(BIN)/ninelives demo

# The etcd coordinator's tests start a real etcd (Debian's etcd-server); the status page's
# test renders it in a headless browser (Debian's chromium).
test: $(BIN)/.installed
	@command -v etcd >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -q etcd-server; }
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -q chromium; }
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src
	$(BIN)/pytest -q

bench: $(BIN)/.installed
	$(BIN)/python bench/proxy_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
