# Two entry points, each setting everything up first: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The croniter floor pyproject.toml declares, with its own dependencies, to put first on the path:
# the cron tests run again on it, so the floor is proven, not assumed.
CRONITER_FLOOR := $(shell sed -n 's/^ *"croniter>=\([0-9.]*\)".*/\1/p' pyproject.toml)
FLOOR := .floor/.installed

.PHONY: demo test test-native test-pure test-heavy test-floor bench bench-micro soak lint stubtest clean

$(STAMP): pyproject.toml setup.py $(wildcard native/*.pyx)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

bench: $(STAMP)
	$(PY) bench/bench_timers.py

# The hot paths under pytest-benchmark; results saved per commit in bench/.results (compare with
# `.venv/bin/pytest-benchmark --storage bench/.results compare`).
bench-micro: $(STAMP)
	$(PY) -m pytest bench/micro --benchmark-only --benchmark-autosave --benchmark-storage=bench/.results

lint: $(STAMP)
	$(PY) -m ruff check src tests bench examples
	$(PY) -m ruff format --check src tests bench examples
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

# The native modules' stubs against the built extensions (no allowlist: the modules
# are built with autotestdict=False, so Cython adds no __test__ dict).
stubtest: $(STAMP)
	$(PY) -m mypy.stubtest chronowheel._cwheel chronowheel._cjournal chronowheel._cframe

# Branch coverage of src/chronowheel over both runs below; the floor (`fail_under` in pyproject.toml) is
# checked once, on the two combined, by `coverage report` (pytest-cov combines each run's workers' data
# into that run's file; `coverage combine` joins the two).
COV := --cov --cov-report= --cov-fail-under=0

# Two workers per core (pytest-xdist): half the suite's wall time is spent waiting (on PostgreSQL, child
# processes, the browser), so four workers on two cores finish the pure-wheel run in 112 s where two took
# 157 s (one sitting, load 2.6-4); `XDIST=` runs in one process. loadgroup: the tests of one
# `xdist_group` run on one worker, one after another. `crash` holds the tests whose busy child processes
# would take both cores at once (tests/test_crash.py's SIGKILL children; a multi-process fault test
# belongs there too); a session fixture that starts a server or a browser runs once per worker that
# needs it, so its tests share a group of their own.
XDIST ?= -n 4 --dist loadgroup

# The engine-level tests, which run again with the native wheel switched off.
PURE_TESTS := tests/test_engine.py tests/test_pools.py tests/test_recurring.py tests/test_robustness.py tests/test_validation.py \
	tests/test_journal.py tests/test_journal_integrity.py tests/test_journal_format.py tests/test_journal_replay.py tests/test_docs.py tests/test_timer_handle.py tests/test_retry_during_stop.py tests/test_anyio.py tests/test_errors.py \
	tests/test_rate.py tests/test_hooks.py tests/test_threads.py tests/test_tasks.py tests/test_integrations.py tests/test_job_path.py tests/test_job_fast.py tests/test_native_job_path.py tests/test_native_durable_path.py tests/test_hidden_jobs.py tests/test_ready_queue.py \
	tests/test_metrics.py tests/test_web.py tests/test_stop_cut_short.py \
	tests/test_operator.py tests/test_results.py tests/test_dependencies.py tests/test_cluster.py \
	tests/test_cluster_rebalance.py tests/test_cluster_ops.py tests/test_cluster_after.py tests/test_cluster_pause.py tests/test_recovery_collector.py tests/test_snapshot_chunks.py

# The wheel tests cover both wheels in one run; the engine-level tests run
# again with the native wheel switched off, so the pure fallback is proven too.
# The runs leave a core idle half their time (they wait on PostgreSQL, child processes,
# the browser): the two runs, lint, the stubs and the croniter floor go side by side,
# each run with its own coverage data, combined at the end.
test: $(STAMP) $(FLOOR)
	rm -f .coverage .coverage.native .coverage.pure
	$(MAKE) --no-print-directory -j6 --output-sync=line lint stubtest test-native test-pure test-heavy test-floor
	$(PY) -m coverage combine .coverage.native .coverage.pure
	$(PY) -m coverage report

test-native: $(STAMP)
	COVERAGE_FILE=.coverage.native $(PY) -m pytest $(XDIST) -m "not slow and not heavy" $(COV) --durations=15

test-pure: $(STAMP)
	COVERAGE_FILE=.coverage.pure CHRONOWHEEL_NO_EXTENSIONS=1 $(PY) -m pytest $(XDIST) -m "not slow and not heavy" $(COV) $(PURE_TESTS)

# The `heavy` tests (hypothesis models and differential streams, SIGKILL cycles) are CPU-bound: in the runs
# above, under coverage's tracer, test_journal_model took 48 s and the crash tests 110 s, against 12 s and
# 32 s in a run without coverage. What they run the other tests run too: they run apart, unmeasured.
test-heavy: $(STAMP)
	$(PY) -m pytest $(XDIST) -m "heavy and not slow" --durations=5
	CHRONOWHEEL_NO_EXTENSIONS=1 $(PY) -m pytest -p no:cacheprovider -m "heavy and not slow" $(PURE_TESTS)

test-floor: $(STAMP) $(FLOOR)
	CHRONOWHEEL_CRONITER_FLOOR=1 PYTHONPATH=.floor $(PY) -m pytest -p no:cacheprovider tests/test_cron_vectors.py \
		tests/test_recurrence.py

$(FLOOR): pyproject.toml $(STAMP)
	rm -rf .floor
	$(PY) -m pip install --quiet --target .floor 'croniter==$(CRONITER_FLOOR)'
	touch $(FLOOR)

# The long runs: hundreds of SIGKILL cycles instead of the suite's few dozen, the journal fuzz at
# 5,000 examples, every `slow` test, and 20 cycles of the cluster fault test.
soak: $(STAMP)
	CHRONOWHEEL_CRASH_CYCLES=500 $(PY) -m pytest --timeout=3600 tests/test_crash.py
	CHRONOWHEEL_FUZZ_EXAMPLES=5000 $(PY) -m pytest --timeout=3600 tests/test_journal_integrity.py -k damaged_journals
	$(PY) -m pytest --timeout=3600 -m slow
	CHRONOWHEEL_CLUSTER_CYCLES=20 $(PY) -m pytest --timeout=3600 tests/test_cluster_faults.py

clean:
	rm -rf $(VENV) .floor build src/chronowheel/*.so native/*.c .coverage
