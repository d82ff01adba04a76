"""Every command of README.md and of the config docstrings, run as a user types it.

The test reads README.md (its fenced ```bash blocks) and the module docstrings of configs/*.py,
extracts each shell command (backslash continuations joined, `#` comments dropped) and runs it
as a subprocess, verbatim except for the size overrides of its program appended at the end
(`PROGRAMS`: fewer steps, a smaller model, fewer examples; tiny archives need --nostrict), then
checks that the program wrote what it promises (a results.json, a report.md, ...).

- Data: `$DOWNLOADS` holds tiny datasets in the official archive formats
  (`tests/official_archives.py`: `cifar-10-python.tar.gz`, `cifar-100-python.tar.gz`,
  `train_32x32.mat`, `test_32x32.mat`, CelebA's five files; CIFAR with 120 training images, of
  which the size overrides hold out 32 as validation instead of the recipe's 5,000). `$DATA`
  is empty for a README block (the README prepares what it uses); for a config docstring it
  holds CIFAR-10 and CIFAR-100 already (the docstrings say the data is prepared once, as in
  the README).
  `$RUNS` is an empty folder.
- The commands run in a scratch folder that links `configs/`, `experiments/` and `ngebm_jax/`
  of this checkout, so `python -m experiments.X --config=configs/Y.py` works as typed and
  relative outputs (`runs/demo`) land in the scratch folder. `python` is this interpreter.
- One test per README block and per config file: its commands run in order, in one
  environment (a later command uses what an earlier one wrote). A command that a README block
  already ran, with only such commands before it in its group, is not run twice; nor is a
  group's last command when a README block ran it the same way (size overrides appended) into
  a folder that no earlier command of its group writes.
- A command whose output other groups or test modules read (`SHARED`: `make demo`'s runs, the
  GPU check, the claims study's test config) runs once per session, as typed in a scratch
  folder of its own; each group that has it, run or left out as run already, gets a copy of
  what it wrote, so that configs/demo.py's "one of its runs by hand" resumes the demo's run as
  the docstring means, instead of training it afresh. Other test modules read it through the
  `shared_outputs` fixture.

A new command in the README needs nothing here if its program is in `PROGRAMS`; a new program
needs its entry there (size overrides and the files it writes), and a command that cannot run
on a CPU without network (hardware, clusters, package downloads) an entry in `SKIPPED`.
"""

from __future__ import annotations

import ast
import dataclasses
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from typing import Callable

import pytest

from configs import demo as demo_config
from ngebm_jax import reporting
from ngebm_jax.data import prepare
from tests import conftest
from tests import official_archives

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINKED = ("configs", "experiments", "ngebm_jax")  # what a command needs of the checkout
TIMEOUT_S = 900

# Commands that cannot run in this test, by how they start, with the reason.
SKIPPED = {
    "make demo": "creates .venv with pip (network) and trains for about 10 minutes; it runs "
                 "`python -m experiments.demo --output=runs/demo`, which the README's "
                 "evaluation block runs",
    "make test": "runs this test suite",
    "make bench-gpu": "creates .venv with pip (network) and is sized for a GPU; it runs the "
                      "command of configs/benchmark_gpu.py's docstring, which that config's test "
                      "runs",
    "make gpu-check": "needs a GPU or TPU (without one it stops at once, as "
                      "tests/accelerator_test.py checks); it runs the command of "
                      "configs/gpu_check.py's docstring, which that config's test runs",
    "pip install": "installs from the package index (network)",
    "gcloud compute tpus": "needs a Cloud TPU pod slice",
    "JAX_COORDINATOR_ADDRESS=": "needs two hosts; tests/multihost_test.py runs the same training "
                                "path with two processes on this machine",
}

# Size overrides shared by the programs that train (train, demo, focus): a 4-channel CNN, two
# steps, a few dozen examples, PGD and OOD scores reduced to one of each. The same for all of
# them, so that `experiments.train` on a run of `experiments.demo` resumes it (same config).
TRAIN_SIZE = (
    "--config.model.name=small_cnn", "--config.model.width=4", "--config.batch_size=16",
    "--config.num_steps=2", "--config.log_every_steps=1", "--config.eval_every_steps=2",
    "--config.checkpoint_every_steps=2", "--config.dataset.num_train=64",
    "--config.dataset.num_validation=32", "--config.dataset.split_num_validation=32",
    "--config.dataset.num_test=32",
    "--config.dataset.num_open_set_test=32", "--config.dataset.num_workers=0",
    "--config.sgld.num_steps=1", "--config.sgld.buffer_size=64", "--config.eval.batch_size=32",
    "--config.eval.max_examples=32", "--config.eval.robustness_num_examples=8",
    "--config.eval.pgd_steps=1", "--config.eval.ood_scores=('max_softmax',)",
    "--config.eval.robustness_norms=('linf',)", "--config.eval.epsilons_linf=(0.0,0.03)",
    "--config.progress_bar=False", "--config.tensorboard=False")

# The evaluators of the runs that leave OOD detection and PGD to other commands (a command that
# chooses its own keeps them).
NO_OOD_NOR_PGD = (("config.eval.evaluators",
                   "--config.eval.evaluators=('classification','calibration')"),)


@dataclasses.dataclass(frozen=True)
class Shared:
  output: str                         # what the command writes (relative to its scratch)
  overrides: tuple[str, ...] = ()     # appended after its program's size overrides (a flag
                                      # given here is one the program's `unless_present` skips)
  resize: bool = True                 # False: run as typed, its config sized for tests already


# Commands (as the shell splits them) whose output other groups or test modules read: run once
# per session and copied into each group's scratch folder (`shared_outputs` gives the folder).
SHARED = {
    # `make demo`'s runs, with their figures: the README's evaluation block reads them, and
    # tests/workflows_calibration_study_test.py checks the report and the figures it links.
    ("python", "-m", "experiments.demo", "--output=runs/demo"): Shared(
        "runs/demo", ("--config.eval.figures=True",
                      f"--config.eval.evaluators={tuple(demo_config.get_config().eval.evaluators)}"
                      .replace(" ", ""))),
    # What tests/workflows_gpu_check_test.py checks of `make gpu-check`'s program.
    ("python", "-m", "experiments.gpu_check", "--config=configs/gpu_check.py",
     "--output=runs/gpu_check"): Shared("runs/gpu_check"),
    # The claims study's test config, whole (2 seeds, a penalty fraction): what
    # tests/workflows_claims_study_test.py recomputes by hand.
    ("python", "-m", "experiments.calibration_study", "--config=configs/claims_study_smoke.py",
     "--output=runs/claims_smoke"): Shared("runs/claims_smoke", resize=False),
}


def _exists(*parts: str) -> Callable[[dict], list[str]]:
  """The files a program writes, from its flags: `_exists("workdir", "results.json")`."""
  return lambda flags: [os.path.join(*(flags[p][-1] if p in flags else p for p in parts))]


@dataclasses.dataclass(frozen=True)
class Program:
  overrides: tuple[str, ...]               # appended to the command as typed
  writes: Callable[[dict], list[str]]       # files that must exist afterwards
  # Appended only to a command that sets the flag: a grid or a budget sized down, not added.
  if_present: tuple[tuple[str, str], ...] = ()
  # Appended only to a command that does not set the flag (a tuple flag given twice is
  # concatenated by ml_collections, not replaced).
  unless_present: tuple[tuple[str, str], ...] = ()


PROGRAMS = {
    "experiments.prepare_data": Program(("--nostrict",), _exists("data_dir", "dataset")),
    # A run's figures (reliability diagrams, OOD histograms, PGD curves; about 2 s a run) are
    # drawn by `make demo`'s runs here, and checked by tests/evaluation_report_test.py.
    # Their OOD and PGD evaluation (about 3 s a run: scikit-learn's import, the OOD sets, two more
    # programs) is what `experiments.evaluate` runs, which the README's blocks run on trained runs.
    "experiments.train": Program(TRAIN_SIZE + ("--config.eval.figures=False",),
                                 _exists("workdir", "results.json"),
                                 unless_present=NO_OOD_NOR_PGD),
    # The shared `make demo` run draws its figures and runs every evaluator (`SHARED`); the other
    # demos (on CIFAR-10, with the peers) draw none, and leave OOD and PGD to it.
    "experiments.demo": Program(TRAIN_SIZE + ("--config.eval.figures=False",),
                                _exists("output", "report", "report.md"),
                                unless_present=NO_OOD_NOR_PGD),
    "experiments.evaluate": Program(
        ("--max_examples=32", "--robustness_num_examples=8", "--pgd_steps=1",
         "--epsilons_linf=0,8/255", "--epsilons_l2=0,0.5"), _exists("output", "report.md")),
    "experiments.salience": Program(
        ("--num_images=16", "--batch_size=16", "--num_examples=2", "--sigma_factors=1"),
        _exists("output", "report.md")),
    "experiments.benchmark": Program(  # step times only
        ("--config.model.name=small_cnn", "--config.model.width=4", "--config.batch_size=8",
         "--steps=1", "--sgld_steps=1", "--config.race.target_accuracy=-1", "--nocomponents",
         "--nopytorch", "--config.on_cpu=run",  # the peer's test: tests/pytorch_peer_test.py
         # The embedded data, generated whole at start: 13,000 images took 3-6 s of each command.
         "--config.dataset.num_train=64", "--config.dataset.num_validation=32",
         "--config.dataset.num_test=32"),
        _exists("output", "benchmark.md"),  # a grid writes no benchmark.json
        # One setting: tests/workflows_benchmark_test.py runs a grid of several.
        if_present=(("batch_sizes", "--batch_sizes=8"), ("dtypes", "--dtypes=float32"),
                    ("fit_memory_gib", "--fit_memory_gib=0.02"))),
    # A WRN-10-1 (the Wide-ResNet code path, with its FLOPs counted by hand in the report), batch
    # 8 in two dtypes, baseline and SGLD-EBM K = 1, then 4 training steps on a little data: what
    # tests/workflows_gpu_check_test.py checks of the shared run (`SHARED`).
    "experiments.gpu_check": Program(
        ("--config.on_cpu=run", "--config.model.depth=10", "--config.model.width=1",
         "--config.batch_size=8", "--config.gpu_check.batch_sizes=(8,)",
         "--config.gpu_check.objectives=('baseline','sgld')", "--config.gpu_check.sgld_steps=1",
         "--config.gpu_check.steps=1", "--config.gpu_check.warmup=1",
         "--config.gpu_check.train_steps=4", "--config.gpu_check.train_objective=baseline",
         "--config.log_every_steps=2", "--config.eval_every_steps=4",
         "--config.checkpoint_every_steps=4", "--config.dataset.num_train=64",
         "--config.dataset.num_validation=16", "--config.dataset.num_test=16",
         "--config.eval.batch_size=8", "--config.eval.max_examples=16",
         "--config.sgld.buffer_size=32"), _exists("output", "gpu_check.md")),
    "experiments.calibration_study": Program(
        TRAIN_SIZE + ("--config.study.seeds=(0,)",
                      "--config.study.stages=()", "--config.study.gammas=()",
                      "--config.study.train_sizes=()", "--config.study.sweep_seeds=()",
                      "--config.study.penalty_fractions=()",
                      "--config.study.peers=()"),  # the peers: their own test
        _exists("output", "report.md"),
        unless_present=(("config.study.variants",
                         "--config.study.variants=('baseline','ngebm')"),)),
    "experiments.focus": Program(
        TRAIN_SIZE + ("--config.focus_study.recipes=('ce', 'cyborg')",
                      "--config.focus_study.seeds=(0,)", "--config.focus_study.entropy_sweep=()",
                      "--config.focus_study.num_salience_images=16"),
        _exists("output", "report.md")),
}


@dataclasses.dataclass(frozen=True)
class Command:
  source: str  # file:line
  text: str    # as written, continuations joined


def _commands(numbered_lines: list[tuple[int, str]], source: str) -> list[Command]:
  """Shell commands of a block: a line ending in `\\` continues; comment-only lines are none."""
  out, pending, start = [], [], None
  for number, line in numbered_lines:
    if not pending:
      start = number
    pending.append(line.strip()[:-1].strip() if line.rstrip().endswith("\\") else line.strip())
    if line.rstrip().endswith("\\"):
      continue
    text = " ".join(p for p in pending if p)
    pending = []
    if shlex.split(text, comments=True):
      out.append(Command(f"{source}:{start}", text))
  return out


def readme_groups(path: str = os.path.join(ROOT, "README.md")) -> list[tuple[str, list[Command]]]:
  """(name, commands) of every ```bash block of the README, in order."""
  groups, block, fence, start = [], None, None, 0
  for number, line in enumerate(open(path).read().splitlines(), 1):
    stripped = line.strip()
    if stripped.startswith("```"):
      if fence is None:
        fence, start = stripped, number
        block = [] if stripped[3:].strip() in ("bash", "sh", "shell") else None
      else:
        if block is not None:
          groups.append((f"README.md:{start}", _commands(block, "README.md")))
        fence = None
      continue
    if block is not None:
      block.append((number, line))
  return groups


def docstring_groups() -> list[tuple[str, list[Command]]]:
  """(configs/NAME.py, commands) of every config whose docstring shows a command."""
  groups = []
  for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))):
    rel = os.path.relpath(path, ROOT)
    with open(path) as f:
      source = f.read()
    body = ast.parse(source).body
    if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)):
      continue
    first, last = body[0].lineno, body[0].end_lineno  # the docstring as written in the file
    lines, in_command = [], False
    for number, line in enumerate(source.splitlines()[first - 1:last], first):
      if line.strip().startswith("python ") or in_command:
        lines.append((number, line))
        in_command = line.rstrip().endswith("\\")
    if lines:
      groups.append((rel, _commands(lines, rel)))
  return groups


README = readme_groups()
DOCSTRINGS = docstring_groups()
GROUPS = README + DOCSTRINGS


def _skip_reason(command: Command) -> str | None:
  return next((reason for start, reason in SKIPPED.items() if command.text.startswith(start)),
              None)


def _program(tokens: list[str]) -> str | None:
  return tokens[2] if tokens[:2] == ["python", "-m"] and len(tokens) > 2 else None


def _flags(argv: list[str]) -> dict[str, list[str]]:
  out = {}
  for token in argv:
    if token.startswith("--") and "=" in token:
      name, value = token[2:].split("=", 1)
      out.setdefault(name, []).append(value)
  return out


def _check_report_names_missing_ood_sets(output: str) -> None:
  """An evaluation report lists each OOD set that was not prepared, with its command."""
  results = reporting.read_json(os.path.join(output, "results.json"))
  report = open(os.path.join(output, "report.md")).read()
  assert "## OOD sets" in report
  for run, record in results["runs"].items():
    meta = record["evaluation"]["meta"]
    for name, command in meta["ood_missing"].items():
      assert f"Not prepared, left out: {name} (`{command}`)" in report, (run, name)
    for name in meta["ood_sets"]:
      assert name in report


# --- the environment ------------------------------------------------------------------------


# Both are written once per session and shared by the xdist workers (commands only read them).
@pytest.fixture(scope="session")
def downloads(tmp_path_factory):
  """The official files, tiny, as a user downloads them."""
  return conftest.shared_folder(
      tmp_path_factory, "readme_downloads",
      lambda folder: official_archives.write_official_archives(
          folder, per_batch=24, num_test=100, num_svhn=100))


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory, downloads):
  """A data folder with CIFAR-10 and CIFAR-100 prepared (what config docstrings assume)."""
  def build(folder):
    for name, file in (("cifar10", "cifar-10-python.tar.gz"),
                       ("cifar100", "cifar-100-python.tar.gz")):
      prepare.prepare_from_archives(name, folder, [os.path.join(downloads, file)])
  return conftest.shared_folder(tmp_path_factory, "readme_prepared", build)


@pytest.fixture(scope="session")
def shared_outputs(tmp_path_factory, downloads) -> Callable[[tuple[str, ...]], str]:
  """A function: a `SHARED` command's words -> the folder it ran in (its outputs are relative).

  Each command runs as typed (size overrides appended) on its first request, in a scratch folder
  of its own with an empty `$DATA`, as the README's blocks run; the xdist workers share it.
  """
  names = {words: f"readme_shared_{i}" for i, words in enumerate(sorted(SHARED))}

  def folder_of(words: tuple[str, ...]) -> str:
    command = next(c for _, cs in GROUPS for c in cs if _words(c) == words)

    def build(folder):
      shutil.rmtree(folder / "checkout", ignore_errors=True)  # what a failed try left
      scratch = _scratch(folder)
      _run(command, scratch, _environment(scratch, os.fspath(folder / "DATA"), downloads),
           SHARED[words])
    return os.path.join(conftest.shared_folder(tmp_path_factory, names[words], build),
                        "checkout")
  return folder_of


def _scratch(parent):
  """A folder that links what a command needs of this checkout."""
  scratch = parent / "checkout"
  scratch.mkdir()
  for entry in LINKED:
    os.symlink(os.path.join(ROOT, entry), scratch / entry)
  return scratch


def _environment(scratch, data_dir: str, downloads: str) -> dict[str, str]:
  return conftest.program_env(
      DATA=data_dir, RUNS=os.fspath(scratch / "RUNS"), DOWNLOADS=downloads,
      TFDS_DATA_DIR=os.fspath(scratch / "tensorflow_datasets"),
      PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


def _run(command: Command, scratch, env, shared: Shared = Shared("")) -> None:
  tokens = shlex.split(command.text, comments=True)
  program = _program(tokens)
  if program not in PROGRAMS:
    pytest.fail(f"{command.source}: `{command.text}` runs {program or tokens[0]!r}, which "
                "tests/readme_test.py does not know: add its size overrides and the files it "
                "writes to PROGRAMS there (or the command to SKIPPED, with the reason it cannot "
                "run in the tests).")
  # $NAME as the shell expands it, from the test's environment (unset names stay, and fail).
  argv = [re.sub(r"\$(\w+)|\$\{(\w+)\}",
                 lambda m: env.get(m.group(1) or m.group(2), m.group(0)), t) for t in tokens]
  unset = [t for t in argv if "$" in t]
  assert not unset, (f"{command.source}: `{command.text}` uses environment variables the test "
                     f"does not set: {unset}; set them in _environment of tests/readme_test.py.")
  if shared.resize:
    argv = _with_overrides(argv, PROGRAMS[program], shared.overrides)
  proc = subprocess.run(argv, cwd=scratch, env=env, capture_output=True, text=True,
                        timeout=TIMEOUT_S)
  assert proc.returncode == 0, (
      f"{command.source}: `{command.text}` failed (size overrides appended: "
      f"{' '.join(argv[len(tokens):])}):\n{proc.stderr[-4000:]}")
  flags = _flags(argv)
  for path in PROGRAMS[program].writes(flags):
    path = path if os.path.isabs(path) else os.path.join(scratch, path)
    assert os.path.exists(path), f"{command.source}: `{command.text}` did not write {path}."
  if program == "experiments.evaluate":
    output = flags["output"][-1]
    _check_report_names_missing_ood_sets(output if os.path.isabs(output)
                                         else os.path.join(scratch, output))


def _words(command: Command) -> tuple[str, ...]:
  """The command as the shell splits it (comments dropped): what decides what it does."""
  return tuple(shlex.split(command.text, comments=True))


# The groups that run a `SHARED` command (tests/conftest.py puts them first).
SHARED_GROUPS = frozenset(name for name, commands in GROUPS
                          if any(_words(c) in SHARED for c in commands))


def _with_overrides(argv: list[str], program: Program, extra=()) -> list[str]:
  """`argv` with the program's size overrides (and `extra`, a `Shared`'s) appended."""
  argv = argv + list(program.overrides) + list(extra)
  given = _flags(argv)
  return (argv + [override for flag, override in program.if_present if flag in given]
          + [override for flag, override in program.unless_present if flag not in given])


def _as_run(command: Command) -> tuple:
  """The command as `_run` runs it, size overrides appended: its words that are not flags, and
  each flag's last value (what absl keeps)."""
  tokens = list(_words(command))
  program = PROGRAMS.get(_program(tokens))
  argv = tokens if program is None else _with_overrides(tokens, program)
  return (tuple(t for t in argv if not (t.startswith("--") and "=" in t)),
          tuple(sorted({k: v[-1] for k, v in _flags(argv).items()}.items())))


def _outputs(command: Command) -> set[str]:
  """The folders the command writes (its --output and --workdir)."""
  flags = _flags(list(_words(command)))
  return {v for k in ("output", "workdir") for v in flags.get(k, ())}


@pytest.mark.parametrize("name,commands", GROUPS, ids=[name for name, _ in GROUPS])
def test_commands_run_as_typed(name, commands, tmp_path, request):
  skipped = [f"{c.source}: {reason}" for c in commands if (reason := _skip_reason(c))]
  to_run = [c for c in commands if not _skip_reason(c)]
  ran_before = []  # what a README block ran already, in the same state
  if name.startswith("configs/"):
    ran_in_readme = {_words(c) for _, cs in README for c in cs}
    fresh = []
    for command in to_run:
      if fresh or _words(command) not in ran_in_readme:
        fresh.append(command)
      else:
        ran_before.append(command)
    # Last in its group, a command that ran in a README block as it runs here (the same once
    # the size overrides are appended) into a folder no earlier command wrote: nothing can
    # differ, and nothing after it reads what it writes.
    runs_in_readme = {_as_run(c) for _, cs in README for c in cs}
    while (len(fresh) > 1 and _as_run(fresh[-1]) in runs_in_readme
           and _words(fresh[-1]) not in SHARED
           and not _outputs(fresh[-1]) & set().union(*map(_outputs, fresh[:-1]))):
      fresh.pop()
    to_run = fresh
  if not to_run:  # before the data is written: a skipped group needs none
    pytest.skip("; ".join(skipped) or "every command ran in a README block")
  downloads = request.getfixturevalue("downloads")
  data_dir = (request.getfixturevalue("prepared_data") if name.startswith("configs/")
              else os.fspath(tmp_path / "DATA"))
  scratch = _scratch(tmp_path)
  env = _environment(scratch, data_dir, downloads)
  for command in ran_before:
    if _words(command) in SHARED:  # a later command may read what it wrote
      _copy_shared(command, scratch, request)
  for command in to_run:
    if _words(command) in SHARED:
      _copy_shared(command, scratch, request)
    else:
      _run(command, scratch, env)


def _copy_shared(command: Command, scratch, request) -> None:
  """What a `SHARED` command wrote (it ran once this session, as typed), into `scratch`."""
  words = _words(command)
  source = request.getfixturevalue("shared_outputs")(words)
  output = SHARED[words].output
  shutil.copytree(os.path.join(source, output), scratch / output, symlinks=True)


# --- the extraction itself -------------------------------------------------------------------


def test_the_readme_path_is_found():
  programs = [_program(shlex.split(c.text, comments=True)) for _, cs in README for c in cs]
  for program in ("experiments.prepare_data", "experiments.train", "experiments.evaluate",
                  "experiments.salience", "experiments.benchmark", "experiments.focus",
                  "experiments.demo"):
    assert program in programs, f"no README command runs {program}"
  texts = [c.text for _, cs in README for c in cs]
  assert ("python -m experiments.train --config=configs/cifar10_ngebm.py "
          "--workdir=$RUNS/cifar10_ngebm --config.dataset.data_dir=$DATA") in texts
  assert all(any(c.text.startswith(start) for c in
                 [c for _, cs in GROUPS for c in cs]) for start in SKIPPED), "a stale SKIPPED entry"
  assert {name for name, _ in DOCSTRINGS} >= {"configs/cifar10_ngebm.py", "configs/focus.py",
                                             "configs/smoke.py"}


def test_commands_are_split_and_joined_like_a_shell():
  lines = ["python -m experiments.demo --output=runs/demo  # what make demo runs",
           "# a comment", "python -m experiments.train --config=configs/smoke.py \\",
           "    --workdir=runs/x", ""]
  commands = _commands(list(enumerate(lines, 1)), "X")
  assert [c.text for c in commands] == [
      "python -m experiments.demo --output=runs/demo  # what make demo runs",
      "python -m experiments.train --config=configs/smoke.py --workdir=runs/x"]
  assert [c.source for c in commands] == ["X:1", "X:3"]
  assert shlex.split(commands[0].text, comments=True)[-1] == "--output=runs/demo"
