"""Datasets by name: the embedded default data, and TFDS datasets (CIFAR, SVHN).

`config.dataset.name` selects one; everything downstream sees random-access sources of
`{"image": uint8 [32, 32, 3], "label": int}` (see `pipeline.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from ngebm_jax.data import pipeline
from ngebm_jax.data.pipeline import ArraySource, PipelineOptions

EMBEDDED = "embedded"
FOCUS_TASK = "focus_task"  # authentic vs generated, with human maps (focus_task.py)
TFDS_DATASETS = {"cifar10": 10, "cifar100": 100, "svhn_cropped": 10}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the trainer needs to know of a dataset.

  `flip`: whether a horizontal mirror keeps an image's class, i.e. whether the augmentation
  flips it when `config.dataset.flip` is unset (False for SVHN's digits: JEM's recipe does not
  flip SVHN).
  """
  name: str
  num_classes: int
  image_shape: tuple[int, int, int] = (32, 32, 3)
  flip: bool = True
  human_maps: bool = False  # batches carry "human_map" (human salience annotations)


def dataset_info(config) -> DatasetInfo:
  name = config.dataset.name
  if name == EMBEDDED:
    from ngebm_jax.data.procedural import embedded  # pylint: disable=g-import-not-at-top
    return DatasetInfo(name, embedded.NUM_CLASSES, tuple(embedded.IMAGE_SHAPE))
  if name == FOCUS_TASK:
    return DatasetInfo(name, 2, human_maps=True)
  if name in TFDS_DATASETS:
    return DatasetInfo(name, TFDS_DATASETS[name], flip=name != "svhn_cropped")
  raise ValueError(f"config.dataset.name must be one of {[EMBEDDED, FOCUS_TASK, *TFDS_DATASETS]}; "
                   f"got {name!r}.")


def _embedded_splits(config) -> dict:
  from ngebm_jax.data.procedural import embedded  # pylint: disable=g-import-not-at-top
  d = config.dataset
  if d.num_train < 1:
    raise ValueError(f"config.dataset.num_train must be >= 1 for the {d.name!r} data (it is "
                     f"generated); got {d.num_train}.")
  return embedded.load(seed=d.seed, num_train=d.num_train, num_validation=d.num_validation,
                       num_test=d.num_test)


def focus_task_splits(config) -> dict:
  """Every split of the focus task of `config.dataset` as arrays (with maps and kinds)."""
  from ngebm_jax.data.procedural import focus_task  # pylint: disable=g-import-not-at-top
  d = config.dataset
  return focus_task.load(
      seed=d.seed, train_kinds=tuple(d.train_kinds),
      open_set_kinds=tuple(d.open_set_kinds), num_train=d.num_train,
      num_validation=d.num_validation, num_test=d.num_test,
      num_open_set_test=d.num_open_set_test, strength=d.strength)


def get_sources(config) -> dict:
  """Random-access sources for 'train', 'validation' and 'test'.

  Fails fast (before any long work) when a TFDS dataset is not prepared in
  `config.dataset.data_dir`, with the command that prepares it.
  """
  info = dataset_info(config)
  if info.name == EMBEDDED:
    return {split: ArraySource({"image": arrays["image"], "label": arrays["label"]})
            for split, arrays in _embedded_splits(config).items()}
  if info.name == FOCUS_TASK:
    return {split: ArraySource({k: arrays[k] for k in ("image", "label", "human_map")})
            for split, arrays in focus_task_splits(config).items()}
  from ngebm_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top
  num_train = config.dataset.num_train
  return tfds_sources.recipe_splits(info.name, config.dataset.data_dir,
                                    seed=config.dataset.split_seed,
                                    num_validation=config.dataset.split_num_validation,
                                    num_train=None if num_train < 0 else num_train)


def load_eval_data(config, *, ood_sets: Sequence[str] | None = None, strict: bool = False,
                   max_examples: int | None = None) -> dict:
  """Test set and OOD sets of `config`'s dataset as in-memory uint8 arrays.

  Args:
    config: the run's config (`config.dataset`: name, data_dir, procedural settings).
    ood_sets: OOD sets to read; None: the dataset's default sets (TFDS datasets: every real set
      of the protocol that is prepared, and the synthetic ones); empty: none.
    strict: TFDS datasets: fail when a chosen OOD set is not prepared (default: leave it out,
      and name it in `ood_missing` with the command that prepares it).
    max_examples: TFDS datasets: read at most this many test and OOD images.

  Returns:
    `{"test": (images [N, 32, 32, 3] uint8, labels [N] int32), "ood": {name: images},
    "ood_missing": {name: command that prepares it}}`.
  """
  info = dataset_info(config)
  ood_sets = None if ood_sets is None else tuple(ood_sets)
  if info.name in (EMBEDDED, FOCUS_TASK):
    if info.name == EMBEDDED:
      from ngebm_jax.data.procedural import embedded  # pylint: disable=g-import-not-at-top
      test = _embedded_splits(config)["test"]
      # Only the sets asked for are generated (each is the same whatever the others).
      data = {"test": (test["image"], test["label"]),
              "ood": embedded.ood_sets(test["image"], seed=config.dataset.seed + 1,
                                       names=embedded.OOD_SET_NAMES if ood_sets is None
                                       else ood_sets)}
    else:
      splits = focus_task_splits(config)  # open-set images: generators never seen in training
      data = {"test": (splits["test"]["image"], splits["test"]["label"]),
              "ood": {"open_set_test": splits["open_set_test"]["image"]}}
      unknown = sorted(set(ood_sets or ()) - set(data["ood"]))
      if unknown:
        raise ValueError(f"OOD sets {unknown} do not exist for the {info.name!r} data; choose "
                         f"from {sorted(data['ood'])}.")
      if ood_sets is not None:
        data["ood"] = {k: data["ood"][k] for k in ood_sets}
    return {**data, "ood_missing": {}}
  from ngebm_jax.data import ood_data  # pylint: disable=g-import-not-at-top
  return ood_data.read_test_and_ood(info.name, config.dataset.data_dir,
                                    max_examples=max_examples, ood_names=ood_sets, strict=strict)


__all__ = ["ArraySource", "DatasetInfo", "PipelineOptions", "dataset_info", "get_sources",
           "focus_task_splits", "load_eval_data", "pipeline"]
