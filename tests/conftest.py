"""Test set-up: 8 CPU devices, so multi-device code is tested on any machine.

Set before JAX is imported. Single-device references use `jax.devices()[:1]` explicitly.
Compiled programs are cached on disk (and shared with subprocesses and xdist workers): many
tests compile the same smoke-config step. Every program is cached, however fast it compiled: a
threshold would make what is cached depend on the machine's load, and the many small evaluation
programs (noisy logits, OOD scores, PGD) add up over the README's fifty commands.
XLA compiles fast rather than well (`FAST_COMPILE`, which every subprocess inherits): the tests'
programs are tiny, so from a fresh clone's empty cache compiling them costs more than running
them.
- LLVM's optimizations off: the suite from an empty cache took 1124 s with them off, 1368 s with
  them on; from a warm cache 943 s against 905 s (measured in one hour on 2 quiet cores).
- XLA:CPU's MLIR fusion emitters off (its older emitters instead): the smoke config's three train
  steps and two evaluation programs compiled in 4.2-5.8 s against 8.9-12.1 s, and five in-process
  test modules ran in 92 s against 152 s from an empty cache, 24 s against 21 s warm.
A jaxlib that lacks one of these flags would abort on it, so the flags are kept only if a probe
process starts with them (once per session; the xdist workers inherit the answer).
"""

import fcntl
import os
import subprocess
import sys
import tempfile

_FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0",
                       "--xla_llvm_disable_expensive_passes=true",
                       "--xla_cpu_use_fusion_emitters=false")


def _fast_compile() -> str:
  """The flags of `_FAST_COMPILE_FLAGS` that this jaxlib accepts, space-separated."""
  if "NGEBM_TEST_FAST_COMPILE" not in os.environ:  # the session's first process asks
    def starts(flags):
      env = dict(os.environ, XLA_FLAGS=" ".join(flags), JAX_PLATFORMS="cpu")
      return subprocess.run([sys.executable, "-c", "import jax.numpy as jnp; jnp.zeros(1)"],
                            env=env, capture_output=True).returncode == 0
    flags = _FAST_COMPILE_FLAGS
    if not starts(flags):
      flags = [f for f in flags if starts([f])]
    os.environ["NGEBM_TEST_FAST_COMPILE"] = " ".join(flags)
  return os.environ["NGEBM_TEST_FAST_COMPILE"]


FAST_COMPILE = _fast_compile()
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {FAST_COMPILE}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "ngebm_jax_test_compilation_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def program_env(**extra: str) -> dict[str, str]:
  """The environment of a program a test starts: one CPU device, as a user has (the suite forces
  8 on itself for its multi-device tests).

  A calibration study of six runs took 20 s (25 s of CPU) on one device, 37 s (54 s) on eight.
  """
  return dict(os.environ, XLA_FLAGS=FAST_COMPILE, **extra)


# The test modules that run whole programs (a minute or more each) go first, so that with
# `pytest -n 2 --dist worksteal` (make test) the many short tests fill in beside them, a worker
# that runs out taking pending tests from the other, instead of two workers waiting on the last
# long one at the end.
_LONG_FIRST = ("readme_test.py", "workflows_", "multihost_test.py", "resume_test.py",
               "train_sgld_test.py", "docs_test.py::test_the_api_reference_builds")


def _builds_shared(item) -> bool:
  """A README test group that runs a command whose output other tests read (`readme_test.SHARED`).

  These go first of all: the first worker builds them at the start, while the other runs short
  tests, so that a test reading one later finds it built instead of waiting on the lock (a wait
  of 22 s was seen with them in the README's order).
  """
  if not item.nodeid.startswith("tests/readme_test.py::test_commands_run_as_typed["):
    return False
  from tests import readme_test  # pylint: disable=g-import-not-at-top
  return item.callspec.params["name"] in readme_test.SHARED_GROUPS


def pytest_collection_modifyitems(config, items):
  del config
  tier = lambda item: (0 if _builds_shared(item) else
                       1 if any(k in item.nodeid for k in _LONG_FIRST) else 2)
  items.sort(key=tier)  # stable: the order within each tier is kept


def shared_folder(tmp_path_factory, name: str, build) -> str:
  """A folder that `build(folder)` fills once per test session, shared by the xdist workers.

  A session fixture runs once per worker; data that several workers read (tiny official archives,
  a prepared TFDS folder) is built by the first worker that asks, under a lock, in the session's
  temporary root, and read by the others. Callers must only read what it holds.
  """
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # the workers' base folders are siblings under the session's root
  folder, done = root / name, root / f"{name}.done"
  with open(root / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    if not done.exists():
      folder.mkdir(exist_ok=True)
      build(folder)
      done.touch()
  return os.fspath(folder)
