# Two entry points, each setting everything up first: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench soak lint clean

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
	CHRONOWHEEL_NO_EXTENSIONS=1 $(PY) -m pytest tests/test_engine.py tests/test_pools.py tests/test_recurring.py \
		tests/test_journal.py tests/test_journal_integrity.py tests/test_docs.py

# The crash tests, long: hundreds of SIGKILL cycles instead of the suite's few dozen; the journal fuzz, long.
soak: $(STAMP)
	CHRONOWHEEL_CRASH_CYCLES=500 $(PY) -m pytest tests/test_crash.py
	CHRONOWHEEL_FUZZ_EXAMPLES=5000 $(PY) -m pytest tests/test_journal_integrity.py -k damaged_journals

clean:
	rm -rf $(VENV) build src/chronowheel/*.so native/*.c
