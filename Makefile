# Two entry points, each setting everything up first: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml setup.py $(wildcard native/*.pyx)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

bench: $(STAMP)
	$(PY) bench/bench_timers.py

lint: $(STAMP)
	$(PY) -m ruff check src tests bench examples
	$(PY) -m ruff format --check src tests bench examples
	$(PY) -m mypy

# The wheel tests cover both wheels in one run; the engine-level tests run
# again with the native wheel switched off, so the pure fallback is proven too.
test: $(STAMP) lint
	$(PY) -m pytest
	CHRONOWHEEL_NO_EXTENSIONS=1 $(PY) -m pytest tests/test_engine.py tests/test_pools.py tests/test_recurring.py tests/test_docs.py

clean:
	rm -rf $(VENV) build src/chronowheel/*.so native/*.c
