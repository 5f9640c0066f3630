# Two commands matter on a fresh machine: `make devnet` and `make test`.
# Everything else here is for developers and operators.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# Packages whose pure cores must stay ruff- and mypy-clean.
CORES  := storage vm chain consensus p2p genesis light node

.PHONY: test lint bench sim soak devnet accel clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test,accel]'
	touch $@

$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test,bench,accel]'
	touch $@

$(VENV)/.installed-lint: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test,lint,accel]'
	touch $@

# The mypyc-compiled build of the hot modules (tools/accel.py lists them; today the
# state tree's staging kernel). A no-op when up to date; where mypyc or a C compiler
# is missing it says so and the node runs them as plain Python (same results).
accel: $(VENV)/.installed-test
	$(PY) -m tools.accel

# A 4-validator local testnet under .devnet/ with demo content; Ctrl-C stops it.
devnet: $(VENV)/.installed-test accel
	$(PY) -m tools.devnet

# The p2p network-namespace test needs `ip` (iproute2); it skips, saying why, where
# the tool cannot be installed or namespaces cannot be made.
test: $(VENV)/.installed-test accel
	@command -v ip >/dev/null 2>&1 || PATH="$$PATH:/usr/sbin:/sbin" command -v ip >/dev/null 2>&1 \
		|| { apt-get update -qq && apt-get install -y -qq iproute2; } >/dev/null 2>&1 \
		|| echo "note: iproute2 is not installable here; the network-namespace test will skip"
	$(PY) -m pytest -q

lint: $(VENV)/.installed-lint
	$(BIN)/ruff check $(CORES) tests benchmarks tools
	$(BIN)/mypy $(CORES)

bench: $(VENV)/.installed-bench accel
	@set -e; for f in benchmarks/*.py; do \
		echo "== $$f"; $(PY) $$f; \
	done

# The consensus simulator over many seeds (CI runs a seeded slice inside make test).
sim: $(VENV)/.installed-test
	$(PY) -m tools.sim --seeds 10000 --jobs 2

# 10 minutes of load on a 4-validator testnet with a random validator SIGKILLed and
# restarted every 20 s (CI runs the short slice tests/test_soak_slice.py instead).
# Exits 1 on a fork, a lost acknowledged transaction or a double sign.
soak: $(VENV)/.installed-test accel
	$(PY) -m tools.soak --duration 600 --kill-every 20

clean:
	rm -rf $(VENV) .devnet build *.egg-info
	rm -f storage/_*_c.*.so storage/_*_c__mypyc.*.so
