# The two set-up commands of the README: `make demo` and `make test`. Each creates .venv
# (Python 3.11) if it is missing and installs the package into it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNS ?= runs/demo
OBJECTIVES ?= baseline,ngebm

.PHONY: demo test docs clean bench-gpu

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,docs]'
	touch $(STAMP)

# Trains the baseline and NG-EBM on the embedded data (same model, steps and seed), evaluates
# them and writes $(RUNS)/report/report.md with its plots. OBJECTIVES=baseline,ngebm,sgld adds JEM;
# OBJECTIVES=baseline,ngebm,label_smoothing,focal adds the calibration peers.
demo: $(STAMP)
	$(PY) -m experiments.demo --output=$(RUNS) --objectives=$(OBJECTIVES)

# The GPU benchmark (configs/benchmark_gpu.py): WRN-28-10, batch 64 and 256, float32 and
# bfloat16, baseline / NG-EBM / SGLD-EBM K = 20; step time, images/s, MFU, peak memory, compile
# time -> $(BENCH)/benchmark.md. PROFILE=1 adds a profiler trace in $(BENCH)/trace.
BENCH ?= runs/bench_gpu
bench-gpu: $(STAMP)
	$(PY) -m experiments.benchmark --config=configs/benchmark_gpu.py --output=$(BENCH) \
	  --batch_sizes=64,256 --dtypes=float32,bfloat16 --objectives=baseline,ngebm,sgld \
	  --sgld_steps=20 --steps=20 --warmup=2 --end_to_end_accuracy=-1 --nocomponents --nopytorch \
	  $(if $(PROFILE),--profile_dir=$(BENCH)/trace)

# The API reference is built with warnings as errors: a broken docstring fails the tests.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=15 tests
	$(MAKE) docs

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

clean:
	rm -rf $(VENV) runs docs/_build
