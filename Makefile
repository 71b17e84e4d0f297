# Every target sets up what it needs: the first run creates .venv and installs modelcrate into it. `make demo`
# installs only what the demo runs (about a minute); every other target installs the full set (several minutes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What the demo's commands need: training the XGBoost sample (samples) and serving it (xgboost).
DEMO_EXTRAS := xgboost,samples
FULL_EXTRAS := all,dev,bench
DEMO_STAMP := $(VENV)/.demo-stamp
FULL_STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench bench-images bench-transform bench-training bench-soak bench-peers venv clean

# pip install with these arguments, retried: one dropped download from the package index must not fail a whole CI run.
define pip_install_retried
	for attempt in 1 2 3; do \
		$(BIN)/pip install --disable-pip-version-check --retries 10 $(1) && break; \
		[ $$attempt -lt 3 ] || exit 1; echo "pip install failed (attempt $$attempt of 3); retrying in 10 s" >&2; sleep 10; \
	done
endef

$(BIN)/python:
	@echo "== creating $(VENV)"
	$(PYTHON) -m venv $(VENV)

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	@echo "== installing modelcrate with the demo's extras only ($(DEMO_EXTRAS)); make test adds the rest"
	$(call pip_install_retried,-e '.[$(DEMO_EXTRAS)]')
	touch $(DEMO_STAMP)

# The full set holds the demo's extras too, so it stamps both.
$(FULL_STAMP): pyproject.toml | $(BIN)/python
	@echo "== installing modelcrate with every extra and the test and benchmark tools (several minutes)"
	$(call pip_install_retried,-e '.[$(FULL_EXTRAS)]')
	# Ray ships a `serve` command too; reinstalling modelcrate last makes `serve` ours (images hold no Ray).
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --force-reinstall -e .
	touch $(FULL_STAMP) $(DEMO_STAMP)

venv: $(FULL_STAMP)

demo: $(DEMO_STAMP)  ## train a sample model, serve it, send CSV/JSON/JSON Lines, stop it
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh
	@echo
	@echo "Next, try:"
	@echo "  source $(VENV)/bin/activate   # puts modelcrate on PATH"
	@echo "  modelcrate init my-model --framework xgboost --model-format json --model-source sample --yes"
	@echo "  modelcrate --help             # every command; modelcrate COMMAND --help for one"
	@echo "  make test                     # installs the rest (several minutes), then lint and the test suite"

# Test files run side by side on this many processes (pytest-xdist), each file whole on one of them: its module
# fixtures (built images, servers) are made once. TEST_PROCESSES=0 runs everything in this process.
TEST_PROCESSES ?= 2

test: $(FULL_STAMP)  ## lint, then the whole test suite
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/pytest --numprocesses $(TEST_PROCESSES) --dist loadfile

lint: $(FULL_STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

bench: $(FULL_STAMP)  ## serving benchmark; writes benchmarks/results/serving.md (needs wrk)
	$(BIN)/python benchmarks/serving.py

bench-images: $(FULL_STAMP)  ## size and cold start of all 8 images; writes benchmarks/results/images.md (needs Docker)
	bash scripts/setup-docker.sh
	$(BIN)/python benchmarks/images.py

bench-transform: $(FULL_STAMP)  ## 1M rows through the local and Ray engines; writes benchmarks/results/transform.md
	$(BIN)/python benchmarks/transform.py

bench-training: $(FULL_STAMP)  ## peak memory of training jobs on 120 MB of CSV; writes benchmarks/results/training_memory.md
	$(BIN)/python benchmarks/training_memory.py

bench-soak: $(FULL_STAMP)  ## valid traffic 30 s, valid and hostile 60 s, valid 30 s; writes benchmarks/results/soak.md (needs wrk)
	$(BIN)/python benchmarks/soak.py

bench-peers: $(FULL_STAMP)  ## modelcrate vs MLflow, MLServer, BentoML; writes benchmarks/results/peers.md and peers.png (needs wrk)
	$(BIN)/python benchmarks/peers.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
