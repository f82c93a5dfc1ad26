# solodesk developer entry points.
#
# On a fresh machine all that is needed is Python 3.11 (as `python3`) and
# access to PyPI: every target that needs the environment builds it first.
#
#   .tools/  a small venv holding a pinned uv
#   .venv/   the project environment, installed by `uv sync --frozen` from uv.lock
#
# Stamp files live inside the directories they describe, so deleting
# .venv or .tools is enough to force a rebuild.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

# --- configuration ---------------------------------------------------------

PYTHON ?= python3
UV_VERSION := 0.13.9

TOOLS := .tools
VENV := .venv
BIN := $(VENV)/bin
UV := $(TOOLS)/bin/uv
PACKAGES := core pipelines models feature_store execution services flows app

UV_STAMP := $(TOOLS)/.uv-$(UV_VERSION).stamp
SYNC_STAMP := $(VENV)/.sync.stamp

# Where solodesk keeps its store, catalog and reports.
SOLODESK_HOME ?= data
export SOLODESK_HOME

# Keep uv on the project's .venv and on the interpreter that built .tools;
# never let it fetch a Python build of its own. The interpreter path is
# only worked out when a recipe needs it.
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_PYTHON_DOWNLOADS := never
BASE_PYTHON = $(shell $(PYTHON) -c 'import sys; print(sys.executable)')

# --- help ------------------------------------------------------------------

.PHONY: help
help: ## Show this list of targets
	@echo "Usage: make <target> [SOLODESK_HOME=dir] [PYTHON=python3.11]"
	@echo
	@awk 'BEGIN { FS = ":.*?## " } \
	     /^[a-zA-Z0-9_.-]+:.*?## / { printf "  %-12s %s\n", $$1, $$2 }' \
	     $(MAKEFILE_LIST)
	@echo
	@echo "SOLODESK_HOME=$(SOLODESK_HOME)"

# --- environment -----------------------------------------------------------

$(UV_STAMP):
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; \
	    sys.exit(0 if v == (3, 11) else "solodesk needs Python 3.11; $(PYTHON) is %d.%d (use make PYTHON=...)" % v)'
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)'
	touch $@

# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set, Python never caches
# it, and every command would spend most of its first seconds compiling mlflow, optuna & co.
# The Numba kernels are compiled into their cache too, so a new desk's first feature build,
# sweep or backtest does not spend seconds compiling them.
$(SYNC_STAMP): $(UV_STAMP) uv.lock pyproject.toml
	$(UV) sync --frozen --compile-bytecode --python '$(BASE_PYTHON)'
	$(BIN)/python -m pipelines.warmup
	touch $@

.PHONY: install
install: $(SYNC_STAMP) ## Create .tools (pinned uv) and .venv (locked deps incl. dev group)
	@:

.PHONY: lock
lock: $(UV_STAMP) ## Re-resolve uv.lock after editing dependencies in pyproject.toml
	$(UV) lock --python '$(BASE_PYTHON)'

# --- quality ---------------------------------------------------------------

.PHONY: lint
lint: install ## ruff check, ruff format --check, mypy, import-linter
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(PACKAGES)
	$(BIN)/lint-imports --no-logo

.PHONY: fmt
fmt: install ## Format the code and apply ruff's automatic fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The dashboard's browser tests drive Debian's chromium through its chromedriver: installed here
# from the distribution's packages when missing (never a browser a test tool downloads).
.PHONY: browser
browser: ## Install Debian's chromium and chromium-driver for the browser tests, when missing
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	else \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing Debian's chromium and chromium-driver for the dashboard's browser tests"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null \
	    || { $$sudo apt-get update >/dev/null && \
	         $$sudo apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null; } \
	    || echo "could not install chromium: the browser tests will skip (or fail where required)"; \
	fi

.PHONY: test
# One worker per core; a test file's tests share a worker, so module fixtures run once.
test: lint browser ## Lint, then run the whole test suite (what CI runs)
	$(BIN)/pytest -n auto --dist loadfile

.PHONY: test-fast
test-fast: install ## The fast lane while working: every test not marked slow, no lint
	$(BIN)/pytest -n auto --dist loadfile -m "not slow"

# --- running ---------------------------------------------------------------

.PHONY: demo
demo: install ## Sample: the research pipeline as Prefect flows, sweep, backtest, its model on paper
	@$(MAKE) --no-print-directory demo-flows
	$(BIN)/solodesk data list
	$(BIN)/solodesk data quarantine
	$(BIN)/solodesk data sql "select symbol, timeframe, side, count(*) as bars, min(ts) as first, max(ts) as last from bars group by all order by all"
	@echo "Validation reports (Great Expectations data docs): $$(ls -d $(SOLODESK_HOME)/reports/ingest-* | tail -n 1)/index.html"
	$(BIN)/solodesk features list
	$(BIN)/solodesk features show --feature-set default --symbol EURUSD --timeframe H1 --columns rsi_14,h4_rsi_14,d1_rsi_14,realized_vol_20,label,label_weight --rows 3
	$(BIN)/solodesk data sql "select label, count(*) as bars, round(avg(rsi_14), 2) as rsi_14, round(avg(d1_rsi_14), 2) as d1_rsi_14, round(avg(label_log_return) * 1e4, 2) as return_bp, round(avg(close), 5) as close from features_default where label is not null group by label order by label"
	$(BIN)/solodesk strategies
	$(BIN)/solodesk sweep --symbol EURUSD --timeframe H1 --strategy sma_cross --param fast=5:50:5 --param slow=20:200:20 --param allow_short=false --spread 1.0 --fees 0.00002 --top 5
	$(BIN)/solodesk backtest --symbol EURUSD --timeframe H1 --strategy sma_cross --param fast=20 --param slow=100 --spread 1.0 --fees 0.00002 --sizing fraction:1
	$(BIN)/solodesk models list
	@echo "The live gate, asked before a version trades live, refuses one below the floors (exit 1) unless overridden with a written reason:"
	$(BIN)/solodesk models gate --name EURUSD-H1-default --version 1 || echo "(exit $$?: refused, and recorded)"
	@echo "Compare the runs side by side in MLflow: make mlflow"
	@echo "Paper trading the registered model (paper trades any version): version 1, its features computed bar by bar with their H4 and D1 context, beside the walk-forward on the same bars:"
	$(BIN)/solodesk paper --symbol EURUSD --timeframe H1 --name EURUSD-H1-default --version 1 \
	    --from 2017-11-27 --spread 1.0 --session demo-model
	@echo "The same version through the trading loop (--engine event) and the vectorized engine: the same trades and final equity:"
	$(BIN)/solodesk backtest --symbol EURUSD --timeframe H1 --name EURUSD-H1-default --version 1 --spread 1.0 --engine event --no-report
	$(BIN)/solodesk backtest --symbol EURUSD --timeframe H1 --name EURUSD-H1-default --version 1 --spread 1.0 --engine vector --no-report
	@echo "Paper trading: an SMA cross over the sample's final weeks through the paper broker and the risk engine; its notifications go to a receiver on 127.0.0.1:$(NOTIFY_PORT):"
	@$(BIN)/solodesk notify listen --port $(NOTIFY_PORT) --seconds 60 & listener=$$!; sleep 1; \
	  SOLODESK_NOTIFY__URLS='["json://127.0.0.1:$(NOTIFY_PORT)/desk"]' $(BIN)/solodesk paper \
	    --symbol EURUSD --timeframe H1 --strategy sma_cross --param fast=10 --param slow=30 \
	    --from 2017-11-27 --spread 1.0 --risk max_daily_loss=0.03 --risk max_trailing_drawdown=0.10 \
	    --session demo; status=$$?; sleep 1; kill $$listener 2>/dev/null; exit $$status
	$(BIN)/solodesk risk status --session demo
	$(BIN)/solodesk data sql "select session, count(*) as fills, round(sum(fees), 2) as fees, min(ts) as first, max(ts) as last from live_fills group by session order by session"
	@echo "MetaTrader 4 over the bridge: the MT4 simulator stands in for the terminal on 127.0.0.1:$(MT4_PORTS) (EURUSD H1 from 2017-11-27 at 72,000x real time); a paper session trades the bars it closes:"
	@$(BIN)/solodesk mt4 sim --symbols EURUSD --timeframe H1 --from 2017-11-27 --speed 72000 --spread 1.0 \
	    --ports $(MT4_PORTS) --wait-for-client > '$(SOLODESK_HOME)/mt4-sim.out' & sim=$$!; \
	  for i in $$(seq 40); do grep -q ready '$(SOLODESK_HOME)/mt4-sim.out' && break; sleep 0.25; done; \
	  cat '$(SOLODESK_HOME)/mt4-sim.out'; \
	  SOLODESK_MT4__PORTS='[$(MT4_PORTS)]' $(BIN)/solodesk paper --symbol EURUSD --timeframe H1 \
	    --strategy sma_cross --param fast=10 --param slow=30 --feed mt4 --to 2017-12-08 --spread 1.0 \
	    --session demo-mt4; status=$$?; kill $$sim 2>/dev/null; wait $$sim; exit $$status
	@echo
	@echo "The desk in a browser (equity, trades, models, data quality, flow runs and the controls):"
	@echo "  SOLODESK_HOME=$(SOLODESK_HOME) $(BIN)/solodesk dashboard --port $(DASHBOARD_PORT)   (or: make dashboard), then open http://127.0.0.1:$(DASHBOARD_PORT)"

MLFLOW_PORT ?= 5000
# The MT4 simulator's ports in the demo (commands, replies, market data).
MT4_PORTS ?= 32768,32769,32770
PREFECT_PORT ?= 4200
PREFECT_API = http://127.0.0.1:$(PREFECT_PORT)/api

# The research pipeline as Prefect flow runs: `solodesk serve` (a local Prefect server and
# every deployment) runs in the background for the length of this target, and each step is a
# run started through the server's API, whose results (artifacts) are printed.
.PHONY: demo-flows
demo-flows: install
	@mkdir -p '$(SOLODESK_HOME)'
	@echo "The research pipeline as Prefect flows: solodesk serve starts a Prefect server on 127.0.0.1:$(PREFECT_PORT) and serves every deployment; each step below is a flow run started through its API:"
	@$(BIN)/solodesk serve --port $(PREFECT_PORT) > '$(SOLODESK_HOME)/serve.log' 2>&1 & serve=$$!; \
	  trap 'kill $$serve 2>/dev/null; wait $$serve 2>/dev/null' EXIT; \
	  export PREFECT_API_URL='$(PREFECT_API)'; set -x; \
	  $(BIN)/solodesk flows run ingest/manual --wait 600 --param 'sources=["sample:eurusd-h1"]' --param 'resample=["H4","D1"]'; \
	  $(BIN)/solodesk flows run features/manual --param feature_set=default --param symbol=EURUSD --param timeframe=H1; \
	  $(BIN)/solodesk flows run features/manual --param feature_set=default --param symbol=EURUSD --param timeframe=H1; \
	  $(BIN)/solodesk flows run walkforward/manual --param symbol=EURUSD --param timeframe=H1 --param trials=20 --param folds=4 --param spread=1.0 --param jobs=2 --param audit=true; \
	  $(BIN)/solodesk flows run promote/manual --param name=EURUSD-H1-default; \
	  set +x; $(BIN)/solodesk flows runs --limit 10; \
	  echo "Prefect UI (while a server runs): http://127.0.0.1:$(PREFECT_PORT); make prefect serves it again, with every deployment and its schedule"

.PHONY: prefect
prefect: install ## Serve the Prefect UI and every deployment on http://127.0.0.1:$(PREFECT_PORT)
	$(BIN)/solodesk serve --port $(PREFECT_PORT)
NOTIFY_PORT ?= 8787
DASHBOARD_PORT ?= 8501

.PHONY: dashboard
dashboard: install ## Serve the dashboard on http://127.0.0.1:$(DASHBOARD_PORT)
	$(BIN)/solodesk dashboard --port $(DASHBOARD_PORT)

.PHONY: mlflow
mlflow: install ## Open the MLflow UI on http://127.0.0.1:$(MLFLOW_PORT) (runs and model registry)
	@mkdir -p '$(SOLODESK_HOME)/mlflow'
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/mlflow ui --host 127.0.0.1 --port $(MLFLOW_PORT) \
	    --backend-store-uri 'sqlite:///$(abspath $(SOLODESK_HOME))/mlflow/mlflow.db' \
	    --default-artifact-root 'file://$(abspath $(SOLODESK_HOME))/mlflow/artifacts'

.PHONY: bench
bench: install ## Run the benchmarks (start-up, ingest, features, backtest, walk-forward, event loop, decision latency, dashboard page loads, MT4 bridge latency; shared data needed)
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/features.py
	$(BIN)/python bench/backtest.py
	$(BIN)/python bench/walkforward.py
	$(BIN)/python bench/event_loop.py
	$(BIN)/python bench/decision_latency.py
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/bridge.py

.PHONY: dvc-repro
dvc-repro: install ## Reproduce the DVC pipeline (ingest, features, train, walkforward; params.yaml)
	PATH='$(CURDIR)/$(BIN)':"$$PATH" $(BIN)/dvc repro

# --- housekeeping ----------------------------------------------------------

.PHONY: clean
clean: ## Remove .venv, .tools and caches (keeps data/)
	rm -rf $(VENV) $(TOOLS) .make .mypy_cache .ruff_cache .pytest_cache .hypothesis \
	    .import_linter_cache build dist
	find . \( -path ./data -o -path ./.git \) -prune -o \
	    \( -name __pycache__ -o -name '*.egg-info' \) -type d -prune -exec rm -rf {} +
