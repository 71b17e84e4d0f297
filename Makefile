# Every target sets up what it needs: the first run creates .venv and installs modelcrate into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench bench-images bench-transform bench-training bench-soak bench-peers venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# Retried: one dropped download from the package index must not fail a whole CI run.
	for attempt in 1 2 3; do \
		$(BIN)/pip install --quiet --disable-pip-version-check --retries 10 -e '.[all,dev,bench]' && break; \
		[ $$attempt -lt 3 ] || exit 1; echo "pip install failed (attempt $$attempt of 3); retrying in 10 s" >&2; sleep 10; \
	done
	# Ray ships a `serve` command too; reinstalling modelcrate last makes `serve` ours (images hold no Ray).
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --force-reinstall -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)  ## train a sample model, serve it, send CSV/JSON/JSON Lines, stop it
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

# Test files run side by side on this many processes (pytest-xdist), each file whole on one of them: its module
# fixtures (built images, servers) are made once. TEST_PROCESSES=0 runs everything in this process.
TEST_PROCESSES ?= 2

test: $(STAMP)  ## lint, then the whole test suite
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest --numprocesses $(TEST_PROCESSES) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)  ## serving benchmark; writes benchmarks/results/serving.md (needs wrk)
	$(BIN)/python benchmarks/serving.py

bench-images: $(STAMP)  ## size and cold start of all 8 images; writes benchmarks/results/images.md (needs Docker)
	bash scripts/setup-docker.sh
	$(BIN)/python benchmarks/images.py

bench-transform: $(STAMP)  ## 1M rows through the local and Ray engines; writes benchmarks/results/transform.md
	$(BIN)/python benchmarks/transform.py

bench-training: $(STAMP)  ## peak memory of training jobs on 120 MB of CSV; writes benchmarks/results/training_memory.md
	$(BIN)/python benchmarks/training_memory.py

bench-soak: $(STAMP)  ## valid traffic 30 s, valid and hostile 60 s, valid 30 s; writes benchmarks/results/soak.md (needs wrk)
	$(BIN)/python benchmarks/soak.py

bench-peers: $(STAMP)  ## modelcrate vs MLflow, MLServer, BentoML; writes benchmarks/results/peers.md and peers.png (needs wrk)
	$(BIN)/python benchmarks/peers.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
