"""Out-of-distribution sets: real ones (TFDS test splits) and synthetic ones, defined once.

What the evaluation protocol needs (docs/method.rst, "The evaluation protocol"; JEM §5):

- `ood_sources(in_distribution, data_dir)`: the real OOD test sets, SVHN, CIFAR-100 (for a
  CIFAR-10 model; CIFAR-10 for a CIFAR-100 model) and CelebA, as 32x32 images with
  `label = NO_LABEL`: those that are prepared, and for the others the command that prepares
  them (`prepare_command`). A strict mode raises on a missing set instead.
- `synthetic_ood(images, seed=...)`: "interp", "uniform" and "constant", made from
  in-distribution uint8 images (no download). The embedded data's own OOD sets
  (`procedural.embedded.ood_sets`) use the same three makers, `interp`, `uniform_images` and
  `constant_images`.
- `read_test_and_ood(name, data_dir)`: the test set and the chosen OOD sets above (default: the
  protocol's real sets that are prepared, and the synthetic ones) as in-memory uint8 arrays,
  for the evaluators, with the sets that are missing and how to prepare them.

CelebA (218x178 aligned faces) is center-cropped to 178x178 (rows 20 to 197) and resized to
32x32 with Pillow's antialiased bilinear filter. JEM's evaluation used torchvision's `Resize(32)`
on its own CelebA image folder, which keeps the aspect ratio (39x32 images, no crop); we make the
images square so that every OOD set has the in-distribution shape. Its test split (19,962
images) is used; `experiments.prepare_data --dataset=celeb_a` imports it offline from the
official files.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from absl import logging
import chex
import numpy as np

from ngebm_jax import _checks
from ngebm_jax.data.pipeline import read_arrays
from ngebm_jax.data.tfds_sources import DatasetNotPreparedError
from ngebm_jax.data.tfds_sources import IMAGE_SHAPE
from ngebm_jax.data.tfds_sources import NO_LABEL
from ngebm_jax.data.tfds_sources import ImageLabelSource
from ngebm_jax.data.tfds_sources import load_source

# OOD set name -> TFDS name. Default OOD sets per in-distribution dataset (JEM Table 3).
OOD_DATASETS = {"svhn": "svhn_cropped", "cifar10": "cifar10", "cifar100": "cifar100",
                "celeba": "celeb_a"}
DEFAULT_OOD = {
    "cifar10": ("svhn", "cifar100", "celeba"),
    "cifar100": ("svhn", "cifar10", "celeba"),
    "svhn_cropped": ("cifar10", "cifar100", "celeba"),
}
SYNTHETIC_OOD = ("interp", "uniform", "constant")
# The official files that `experiments.prepare_data --archive=...` imports, as their publishers
# name them (CIFAR: the python version; the binary one works too).
OFFICIAL_FILES = {"cifar10": ("cifar-10-python.tar.gz",),
                  "cifar100": ("cifar-100-python.tar.gz",),
                  "svhn_cropped": ("train_32x32.mat", "test_32x32.mat"),
                  "celeb_a": ("img_align_celeba.zip", "list_eval_partition.txt",
                              "list_attr_celeba.txt", "list_landmarks_align_celeba.txt",
                              "identity_CelebA.txt")}

# Test-time input noise of an OOD set, as a multiple of the variance every test image gets
# (std 0.03 in the recipe). JEM's and NG-EBM's evaluation code ("cifar_interp")
# average two test images that each already carry that noise, then add it once more:
# (x1 + s n1 + x2 + s n2) / 2 + s n3 has noise variance s^2 / 2 + s^2 = 1.5 s^2. `interp` makes
# the clean average; the OOD evaluator adds noise of std s * sqrt(1.5) to it.
TEST_NOISE_VARIANCE = {"interp": 1.5}


def interp(images: np.ndarray, rng: np.random.Generator, m: int) -> np.ndarray:
  """`m` pixel averages of two distinct random images of `images` (JEM's "interp").

  Pairs are uniform over ordered pairs of distinct images (the reference averages two shuffled
  test batches, batch i with batch i - 1). Half grey levels are rounded to even, so the rounding
  is unbiased (rounding halves up would brighten the set by 1/4 level on average). The
  reference's noise is not in the images: the evaluator adds it (`TEST_NOISE_VARIANCE`).
  """
  n = images.shape[0]
  if n < 2:
    raise ValueError(f"'interp' needs at least 2 in-distribution images; got {n}.")
  first = rng.integers(0, n, m)
  second = (first + rng.integers(1, n, m)) % n  # never the same image twice
  total = images[first].astype(np.uint16) + images[second].astype(np.uint16)
  return np.rint(total / 2).astype(np.uint8)  # rint: halves to even


def uniform_images(rng: np.random.Generator, m: int, shape: Sequence[int]) -> np.ndarray:
  """`m` images of i.i.d. uniform pixels in 0..255."""
  return rng.integers(0, 256, (m, *shape), dtype=np.uint8)


def constant_images(rng: np.random.Generator, m: int, shape: Sequence[int]) -> np.ndarray:
  """`m` images of one random colour each."""
  colours = rng.integers(0, 256, (m, 1, 1, shape[-1]), dtype=np.uint8)
  return np.broadcast_to(colours, (m, *shape)).copy()


def ood_source(ood_name: str, data_dir: str | os.PathLike | None = None, *,
               split: str = "test") -> ImageLabelSource:
  """One OOD set ("svhn", "cifar10", "cifar100", "celeba") as 32x32 images with `NO_LABEL`.

  Raises:
    DatasetNotPreparedError: see `require_prepared`.
  """
  if ood_name not in OOD_DATASETS:
    raise ValueError(f"unknown OOD set {ood_name!r}; known: {sorted(OOD_DATASETS)} (and the "
                     f"synthetic {SYNTHETIC_OOD}, see synthetic_ood).")
  tfds_name = OOD_DATASETS[ood_name]
  source = load_source(tfds_name, split, data_dir)
  resize_to = IMAGE_SHAPE[0] if tfds_name == "celeb_a" else None
  return ImageLabelSource(source, label_key=None, resize_to=resize_to)


def prepare_command(ood_name: str, data_dir: str | os.PathLike | None = None) -> str:
  """The command that prepares the real OOD set `ood_name` in `data_dir`, offline from the
  official files (SVHN, CIFAR, CelebA; without --archive TFDS downloads them)."""
  tfds_name = OOD_DATASETS[ood_name]
  if data_dir is None:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    data_dir = tfds.core.constants.DATA_DIR
  command = (f"python -m experiments.prepare_data --dataset={tfds_name} "
             f"--data_dir={os.fspath(data_dir)}")
  return " ".join([command, *(f"--archive={f}" for f in OFFICIAL_FILES.get(tfds_name, ()))])


def _check_names(in_distribution: str, names: Sequence[str]) -> None:
  known = sorted(OOD_DATASETS) + list(SYNTHETIC_OOD)
  unknown = [n for n in names if n not in known]
  if unknown:
    raise ValueError(f"unknown OOD sets {unknown}; choose from {known}.")
  for ood_name in names:
    if OOD_DATASETS.get(ood_name) == in_distribution:
      raise ValueError(f"{ood_name!r} is the in-distribution dataset, not an OOD set.")


def default_ood_sets(in_distribution: str) -> tuple[str, ...]:
  """The real OOD sets of the protocol for `in_distribution`, then the synthetic ones."""
  if in_distribution not in DEFAULT_OOD:
    raise ValueError(f"no default OOD sets for {in_distribution!r}; pass names= "
                     f"(known: {sorted(OOD_DATASETS)}).")
  return DEFAULT_OOD[in_distribution] + SYNTHETIC_OOD


def ood_sources(in_distribution: str, data_dir: str | os.PathLike | None = None, *,
                names: Sequence[str] | None = None, strict: bool = False
                ) -> tuple[dict[str, ImageLabelSource], dict[str, str]]:
  """The prepared real-image OOD sets for a model trained on `in_distribution`.

  Args:
    in_distribution: "cifar10", "cifar100" or "svhn_cropped".
    data_dir: TFDS data directory.
    names: OOD set names, real or synthetic (synthetic ones are skipped here: they need no
      data); default `default_ood_sets(in_distribution)` (CIFAR-10: svhn, cifar100, celeba).
    strict: raise when a chosen real set is not prepared, instead of leaving it out.

  Returns:
    `(sources, missing)`: {ood name: source of {"image": uint8 [32, 32, 3], "label": NO_LABEL}}
    of the prepared sets (test splits), and {ood name: the command that prepares it} of the
    others, which are logged as warnings.

  Raises:
    DatasetNotPreparedError: `strict` and a chosen set is not prepared (all of them named).
  """
  names = default_ood_sets(in_distribution) if names is None else tuple(names)
  _check_names(in_distribution, names)
  sources, missing = {}, {}
  for ood_name in names:
    if ood_name in SYNTHETIC_OOD:
      continue
    try:
      sources[ood_name] = ood_source(ood_name, data_dir)
    except DatasetNotPreparedError:
      missing[ood_name] = prepare_command(ood_name, data_dir)
  if missing and strict:
    raise DatasetNotPreparedError(
        f"OOD sets {sorted(missing)} are not prepared (strict mode: config.eval.ood_strict / "
        "--ood_strict). Prepare them with:\n  " + "\n  ".join(missing.values()))
  for ood_name, command in missing.items():
    logging.warning("The OOD set %r is not prepared and is left out of the evaluation; "
                    "prepare it with: %s", ood_name, command)
  return sources, missing


def synthetic_ood(images: np.ndarray, *, seed: int, num_examples: int | None = None
                  ) -> dict[str, np.ndarray]:
  """The synthetic OOD sets, from in-distribution uint8 images (JEM §5.2 "interp", and noise).

  interp    pixel average of two distinct random in-distribution images (halves to even); JEM
            averages two shuffled test batches (its extra noise: `TEST_NOISE_VARIANCE`).
  uniform   i.i.d. uniform pixels in 0..255.
  constant  one random colour per image.

  Args:
    images: uint8 [N, H, W, C] in-distribution images (normally the test split), N >= 2.
    seed: seeds a `numpy.random.Generator`; each set uses its own child seed.
    num_examples: images per set, M; default N.

  Returns:
    {"interp", "uniform", "constant": uint8 [M, H, W, C]}.
  """
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f"images must be uint8 [N, H, W, C]; got {images.dtype} {images.shape}.")
  m = images.shape[0] if num_examples is None else num_examples
  _checks.check_positive_int(m, "num_examples")
  m = int(m)
  rng_interp, rng_uniform, rng_constant = (
      np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
  return {"interp": interp(images, rng_interp, m),
          "uniform": uniform_images(rng_uniform, m, images.shape[1:]),
          "constant": constant_images(rng_constant, m, images.shape[1:])}


def read_test_and_ood(name: str, data_dir: str | os.PathLike | None = None, *,
                   max_examples: int | None = None, seed: int = 0,
                   ood_names: Sequence[str] | None = None, strict: bool = False
                   ) -> dict[str, Any]:
  """The test set and the OOD sets of a model trained on `name`, as in-memory uint8 arrays.

  Every chosen OOD set that is prepared is read; a real set that is not prepared is left out
  and reported with the command that prepares it (or, `strict`, raises).

  Args:
    name: the in-distribution TFDS dataset ("cifar10", "cifar100", "svhn_cropped").
    data_dir: TFDS data directory.
    max_examples: read at most this many examples of the test set and of each real OOD set (the
      first ones in storage order, which TFDS has already shuffled by key hash); None: all.
    seed: seeds the synthetic OOD sets.
    ood_names: OOD sets to evaluate, real and synthetic; default `default_ood_sets(name)`.
    strict: fail when a chosen real OOD set is not prepared.

  Returns:
    {"test": (images uint8 [N, 32, 32, 3], labels int32 [N]),
     "ood": {chosen set: uint8 [M, 32, 32, 3]} (synthetic sets have N images),
     "ood_missing": {chosen real set that is not prepared: the command that prepares it}}.

  Raises:
    DatasetNotPreparedError: the dataset is not prepared, or (`strict`) a chosen OOD set.
  """
  if max_examples is not None and (isinstance(max_examples, bool) or int(max_examples) < 2):
    raise ValueError(f"max_examples must be None or an integer >= 2; got {max_examples!r}.")
  names = default_ood_sets(name) if ood_names is None else tuple(ood_names)
  test_source = ImageLabelSource(load_source(name, "test", data_dir))  # fail fast
  sources, missing = ood_sources(name, data_dir, names=names, strict=strict)

  def first(source):
    n = len(source) if max_examples is None else min(len(source), int(max_examples))
    return read_arrays(source, range(n))

  test = first(test_source)
  ood = {}
  for ood_name, source in sources.items():
    logging.info("Reading the OOD set %s (%d examples).", ood_name,
                 len(source) if max_examples is None else min(len(source), max_examples))
    ood[ood_name] = first(source)["image"]
  synthetic = synthetic_ood(test["image"], seed=seed)
  ood.update({k: synthetic[k] for k in names if k in SYNTHETIC_OOD})
  ood = {k: ood[k] for k in names if k in ood}  # in the order asked for
  # Every set must have the in-distribution image shape (CelebA is resized to it).
  chex.assert_equal_shape_suffix([test["image"], *ood.values()], 3)
  return {"test": (test["image"], test["label"].astype(np.int32)), "ood": ood,
          "ood_missing": missing}


__all__ = ["NO_LABEL", "OOD_DATASETS", "DEFAULT_OOD", "SYNTHETIC_OOD", "TEST_NOISE_VARIANCE",
           "OFFICIAL_FILES", "interp", "uniform_images", "constant_images", "ood_source",
           "ood_sources", "prepare_command", "default_ood_sets", "synthetic_ood",
           "read_test_and_ood"]
