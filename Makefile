# edge-gateway — the two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_DB ?= var/demo.db
DEMO_SECONDS ?= 150
FLEET_DEMO_SECONDS ?= 60

.PHONY: demo fleet-demo test test-ha lint bench soak clean help

help:
	@echo "make demo   run the gateway against simulated devices ($(DEMO_SECONDS) s, database $(DEMO_DB))"
	@echo "make fleet-demo  3 hubs -> clinic broker -> cloud broker -> 2 ingest -> PostgreSQL ($(FLEET_DEMO_SECONDS) s)"
	@echo "make test   lint, type-check and run the test suite"
	@echo "make bench  run the benchmarks (figures as ratios against baselines)"
	@echo "make soak   long soak and fault runs"
	@echo "make test-ha  discovery read back by a real Home Assistant (installs it in HA_VENV, ~700 MB)"
	@echo "make lint   ruff and mypy only"

$(STAMP): pyproject.toml scripts/system-deps.sh
	sh scripts/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edge-gateway --db $(DEMO_DB) demo --duration $(DEMO_SECONDS)

fleet-demo: $(STAMP)
	FLEET_DEMO_SECONDS=$(FLEET_DEMO_SECONDS) $(BIN)/python scripts/fleet_demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# Home Assistant core in its own venv outside the repository (about 700 MB, minutes to
# install once; the test itself takes about 10 s).
HA_VENV ?= /tmp/ha-venv
test-ha: $(STAMP)
	sh scripts/ha-venv.sh $(HA_VENV)
	HA_VENV=$(HA_VENV) $(BIN)/pytest -q -m homeassistant tests/integration/test_homeassistant_real.py

soak: $(STAMP)
	$(BIN)/pytest -q -m soak

bench: $(STAMP)
	@status=0; for b in benchmarks/bench_*.py; do echo "== $$b"; \
		$(BIN)/python $$b || { echo "!! $$b missed a target or failed"; status=1; }; done; \
		exit $$status

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
