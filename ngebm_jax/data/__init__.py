"""Datasets by name: the embedded default data, and TFDS datasets (CIFAR, SVHN).

`config.dataset.name` selects one; everything downstream sees random-access sources of
`{"image": uint8 [32, 32, 3], "label": int}` (see `pipeline.py`).
"""

from __future__ import annotations

import dataclasses

from ngebm_jax.data import pipeline
from ngebm_jax.data.pipeline import ArraySource, PipelineOptions

EMBEDDED = "embedded"
TFDS_DATASETS = {"cifar10": 10, "cifar100": 100, "svhn_cropped": 10}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  name: str
  num_classes: int
  image_shape: tuple[int, int, int] = (32, 32, 3)


def dataset_info(config) -> DatasetInfo:
  name = config.dataset.name
  if name == EMBEDDED:
    from ngebm_jax.data import embedded  # pylint: disable=g-import-not-at-top
    return DatasetInfo(name, embedded.NUM_CLASSES, tuple(embedded.IMAGE_SHAPE))
  if name in TFDS_DATASETS:
    return DatasetInfo(name, TFDS_DATASETS[name])
  raise ValueError(f"config.dataset.name must be one of {[EMBEDDED, *TFDS_DATASETS]}; "
                   f"got {name!r}.")


def _embedded_splits(config) -> dict:
  from ngebm_jax.data import embedded  # pylint: disable=g-import-not-at-top
  d = config.dataset
  return embedded.load(seed=d.get("seed", 0), num_train=d.get("num_train", 10000),
                       num_validation=d.get("num_validation", 1000),
                       num_test=d.get("num_test", 2000))


def get_sources(config) -> dict:
  """Random-access sources for 'train', 'validation' and 'test'.

  Fails fast (before any long work) when a TFDS dataset is not prepared in
  `config.dataset.data_dir`, with the command that prepares it.
  """
  info = dataset_info(config)
  if info.name == EMBEDDED:
    return {split: ArraySource({"image": arrays["image"], "label": arrays["label"]})
            for split, arrays in _embedded_splits(config).items()}
  from ngebm_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top
  return tfds_sources.recipe_splits(info.name, config.dataset.get("data_dir"))


def load_eval_data(config) -> dict:
  """Test set and OOD sets of `config` as in-memory uint8 arrays.

  Returns:
    `{"test": (images [N, 32, 32, 3] uint8, labels [N] int32), "ood": {name: images}}`.
  """
  info = dataset_info(config)
  if info.name == EMBEDDED:
    from ngebm_jax.data import embedded  # pylint: disable=g-import-not-at-top
    test = _embedded_splits(config)["test"]
    ood = embedded.ood_sets(test["image"], seed=config.dataset.get("seed", 0) + 1)
    return {"test": (test["image"], test["label"]), "ood": ood}
  from ngebm_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top
  return tfds_sources.load_eval_data(info.name, config.dataset.get("data_dir"),
                                     max_examples=config.eval.get("max_examples"))


__all__ = ["ArraySource", "DatasetInfo", "PipelineOptions", "dataset_info", "get_sources",
           "load_eval_data", "pipeline"]
