# The two set-up commands of the README: `make demo` and `make test`. Each creates .venv
# if it is missing and installs the package into it, with the newest Python >= 3.11 on the
# PATH (python3.13, 3.12, 3.11, then python3); `make test PYTHON=/path/to/python3` chooses another.
# A candidate counts only if it runs (a pyenv shim for a version that is not selected does not).
PYTHON ?= $(or $(firstword $(foreach p,python3.13 python3.12 python3.11 python3,$(if $(shell $(p) -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1 && echo ok),$(p)))),python3.11)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNS ?= runs/demo
OBJECTIVES ?= baseline,ngebm

.PHONY: demo test docs clean bench-gpu

# ml_dtypes 0.7.0 (which jax accepts) takes 1.2 s to import, 0.6.0 5 ms (its ufunc loops are
# registered one by one): every program and test process imports it, so this environment skips it.
# Bytecode is compiled on all cores (pip compiles one file after another), this checkout's too: an
# editable install compiles none of it, and where PYTHONDONTWRITEBYTECODE is set every process
# would compile it again. A file that does not compile is left to import from source, as pip does.
$(STAMP): setup.cfg pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e '.[test,docs]' 'ml_dtypes!=0.7.0'
	-$(PY) -m compileall -q -j 0 $(VENV)/lib ngebm_jax experiments configs tests >/dev/null
	touch $(STAMP)

# Trains the baseline and NG-EBM on the embedded data (same model, steps and seed), evaluates
# them and writes $(RUNS)/report/report.md with its plots. OBJECTIVES=baseline,ngebm,sgld adds JEM;
# OBJECTIVES=baseline,ngebm,label_smoothing,focal adds the calibration peers.
demo: $(STAMP)
	$(PY) -m experiments.demo --output=$(RUNS) --objectives=$(OBJECTIVES)

# The accelerator build of JAX for `make bench-gpu` and `make gpu-check`: ACCEL=cuda12, cuda13
# or tpu (pip install -e '.[test,$(ACCEL)]'), detected when unset by tools/accelerator.sh:
# nvidia-smi's CUDA version (13 or later: cuda13, else cuda12), or a TPU VM (/dev/accel*, or
# /dev/vfio with the VM's TPU metadata). With no accelerator found they stop at once, before
# creating $(VENV) or installing anything. The build installed is recorded in
# $(VENV)/.installed-accelerator (delete it to install another). SKIP_INSTALL=1 uses $(PY) as
# it is (e.g. PY=python3 for an environment that has the accelerator build, on a machine
# without network).
.PHONY: accelerator gpu-check offline-site
ACCEL ?=
ACCEL_STAMP := $(VENV)/.installed-accelerator
INSTALL_ACCEL := $(if $(SKIP_INSTALL),,$(ACCEL_STAMP))

# A machine without network whose Python already has JAX's accelerator build (a GPU image with
# jax, flax, optax and orbax): `make wheels` on a machine with network downloads, for that
# Python ($(WHEELS_PYTHON), x86-64 Linux), the packages such images lack into $(WHEELS); copy
# the repository there and run `make gpu-check SKIP_INSTALL=1 PY=python3 WHEELS=.whl`, which
# unpacks them into $(WHEELS)/site (nothing is installed into that Python) and runs with them.
WHEELS_PYTHON ?= 3.12
OFFLINE_PACKAGES ?= ml-collections grain tensorflow-datasets tensorboardX importlib_resources \
  array-record dm-tree docstring-parser googleapis-common-protos immutabledict portpicker \
  simple-parsing tensorflow-metadata termcolor toml
OFFLINE_SDISTS ?= promise  # published as source only: built here into a pure-Python wheel
WHEEL_PLATFORMS := $(foreach n,2_28 2_27 2_17 2014 1,--platform manylinux$(if $(filter 2014 1,$(n)),$(n),_$(n))_x86_64)
RUN_ENV := $(if $(WHEELS),PYTHONPATH=$(abspath $(WHEELS))/site:$(CURDIR) ,)

.PHONY: wheels
wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
	  --python-version $(WHEELS_PYTHON) $(WHEEL_PLATFORMS) -d $(or $(WHEELS),.whl) $(OFFLINE_PACKAGES)
	$(PYTHON) -m pip wheel --quiet --no-deps -w $(or $(WHEELS),.whl) $(OFFLINE_SDISTS)

offline-site:
	$(if $(WHEELS),$(PY) -m pip install --quiet --no-index --no-deps --no-compile --upgrade \
	  --target $(WHEELS)/site $(WHEELS)/*.whl,@true)

accelerator:
	@ACCEL='$(ACCEL)' sh tools/accelerator.sh >/dev/null

$(ACCEL_STAMP): setup.cfg pyproject.toml | accelerator
	accel=$$(ACCEL='$(ACCEL)' sh tools/accelerator.sh) && \
	  { test -x $(PY) || $(PYTHON) -m venv $(VENV); } && \
	  $(PY) -m pip install --quiet --upgrade pip && \
	  $(PY) -m pip install --quiet -e ".[test,$$accel]" && \
	  echo $$accel > $@

# The GPU benchmark (configs/benchmark_gpu.py): WRN-28-10, batch 64 and 256, float32 and
# bfloat16, baseline / NG-EBM / SGLD-EBM K = 20; step time, images/s, MFU, peak memory, compile
# time -> $(BENCH)/benchmark.md. PROFILE=1 adds a profiler trace in $(BENCH)/trace.
BENCH ?= runs/bench_gpu
bench-gpu: accelerator $(INSTALL_ACCEL) offline-site
	$(RUN_ENV)$(PY) -m experiments.benchmark --config=configs/benchmark_gpu.py --output=$(BENCH) \
	  --batch_sizes=64,256 --dtypes=float32,bfloat16 --objectives=baseline,ngebm,sgld \
	  --sgld_steps=20 --steps=20 --warmup=2 --config.race.target_accuracy=-1 --nocomponents \
	  --nopytorch \
	  $(if $(PROFILE),--profile_dir=$(BENCH)/trace)

# The check a newly lent GPU or TPU runs first (configs/gpu_check.py; at most 8 minutes on one
# H100, install included): the benchmark grid above plus a few hundred steps of the training
# loop with its real input pipeline -> $(GPU_CHECK)/gpu_check.{json,md}.
GPU_CHECK ?= runs/gpu_check
gpu-check: accelerator $(INSTALL_ACCEL) offline-site
	$(RUN_ENV)$(PY) -m experiments.gpu_check --config=configs/gpu_check.py --output=$(GPU_CHECK)

# The API reference is built with warnings as errors by one of the tests (tests/docs_test.py,
# `make docs`'s command): a broken docstring fails the tests.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=15 tests

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

clean:
	rm -rf $(VENV) runs docs/_build
