# Every target sets up what it needs: the first run creates .venv and installs modelcrate into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench bench-images venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[all,dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)  ## train a sample model, serve it, send CSV/JSON/JSON Lines, stop it
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: $(STAMP)  ## lint, then the whole test suite
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)  ## serving benchmark; writes benchmarks/results/serving.md (needs wrk)
	$(BIN)/python benchmarks/serving.py

bench-images: $(STAMP)  ## size and cold start of all 8 images; writes benchmarks/results/images.md (needs Docker)
	bash scripts/setup-docker.sh
	$(BIN)/python benchmarks/images.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
