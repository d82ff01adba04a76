"""Input pipelines: grain datasets over any random-access source of images.

A *source* is anything with `__len__` and `__getitem__(i) -> {"image": uint8 [H, W, C],
"label": int, ...}`: a `tfds.data_source`, or `ArraySource` over in-memory arrays (the embedded
data). The recipe (docs/method.rst): pixels scaled to [-1, 1]; augmentation pad-4 (reflect) + random
crop + horizontal flip; Gaussian noise of std 0.03 on every input, in training and at test time.

The host's part is small: grain reads, shuffles and batches uint8 images (`train_dataset`), and
`device_input.DeviceIterator` ships them as uint8 (a quarter of float32's bytes), then crops,
flips, scales and adds noise on the device (`augment.py`), a few batches ahead of the step.
The augmentation of batch `i` is keyed by `fold_in(data key, i)`, and grain's iterator state is
the batch position, so the stream is the same on every run and after a resume.

Grain worker processes (`num_workers > 0`) only read, decode and stack here; on in-memory data
they cost more than they save (measured in `device_input.py`'s docstring), while a source that
decodes images (a `tfds.data_source` of PNGs) can use them.

Read threads (`read_threads`, grain's `ReadOptions.num_threads`) are 0 by default: batches are
read in the thread that asks for them, one at a time. Grain's own default, 16 threads keeping
500 elements (here: batches) ahead, read the embedded data 2.4x slower (97 against 237 batches
of 64 per second) and kept reading for a second after the loop stopped, and on CIFAR-10's PNGs
gave 16 batches/s against 20 with none and 23 with 4 threads (2 quiet CPU cores, one run each).

Multi-host: each process reads the slice `process_index::process_count` of every global batch
order, so the global batch is the concatenation of the local ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import grain
import numpy as np


class ArraySource:
  """Random-access source over in-memory arrays with a common first axis."""

  def __init__(self, arrays: Mapping[str, np.ndarray]):
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
      raise ValueError(f"arrays must have the same length; got {lengths}.")
    if "image" not in arrays or "label" not in arrays:
      raise ValueError(f"a source needs 'image' and 'label'; got keys {sorted(arrays)}.")
    self._arrays = dict(arrays)
    self._len = next(iter(lengths.values()))

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {k: v[index] for k, v in self._arrays.items()}

  @property
  def arrays(self) -> dict[str, np.ndarray]:
    return self._arrays


def to_model_space(images: np.ndarray) -> np.ndarray:
  """uint8 pixels in [0, 255] -> float32 in [-1, 1]."""
  return images.astype(np.float32) / 127.5 - 1.0


# Per-pixel fields that must move with the image under crop and flip (the focus task's maps).
SPATIAL_FIELDS = ("human_map", "mask")


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
  batch_size: int            # per-process batch size
  augment: bool = True       # pad-4 reflect + random crop (+ flip)
  flip: bool = True          # horizontal flips in the augmentation (JEM: none for SVHN digits)
  noise_std: float = 0.03    # Gaussian noise added to every input (recipe: train and test)
  num_workers: int = 0       # grain worker processes; 0 = in the main process
  read_threads: int = 0      # grain threads reading batches ahead in each process; 0 = none
  seed: int = 0
  poison_batch: int = -1     # tests only: this batch's images become NaN (non-finite guard)
  unlabelled_batch: bool = False  # add "image_unlabelled": a second batch in its own order


def _stack(examples):
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def _host_batch(batch: dict, index: int) -> dict:
  """A batch as it leaves the host: uint8 images, int32 labels, and its position `index`."""
  if batch["image"].dtype != np.uint8:
    raise ValueError(f"sources must yield uint8 images; got {batch['image'].dtype}.")
  return dict(batch, label=batch["label"].astype(np.int32), batch_index=np.int32(index))


def _shard_for_process(ds: grain.MapDataset, process_index: int, process_count: int):
  if process_count > 1:
    ds = ds[process_index::process_count]
  return ds


def train_dataset(source, options: PipelineOptions, *, process_index: int = 0,
                  process_count: int = 1) -> grain.IterDataset:
  """Infinite, shuffled (reshuffled every epoch) stream of training batches, not augmented.

  Each batch is `{"image": uint8 [b, H, W, C], "label": int32 [b], ..., "batch_index": int32}`
  (plus `"image_unlabelled"` with `options.unlabelled_batch`), for `DeviceIterator` to augment.
  The global order is fixed by `options.seed`; each process takes every `process_count`-th
  example of it, so `options.batch_size` is the per-process batch.
  """
  def batches(seed):
    ds = grain.MapDataset.source(source).seed(seed).shuffle().repeat(None)
    ds = _shard_for_process(ds, process_index, process_count)
    return ds.batch(options.batch_size, drop_remainder=True, batch_fn=_stack)

  ds = batches(options.seed).map_with_index(lambda i, b: _host_batch(b, i))
  if options.unlabelled_batch:
    # JEM's second loader: the same training images in another order, labels unused.
    other = batches(options.seed + 1)
    ds = grain.experimental.ZipMapDataset([ds, other]).map(
        lambda pair: dict(pair[0], image_unlabelled=pair[1]["image"]))
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=options.read_threads,
                                             prefetch_buffer_size=2 * options.read_threads))
  if options.num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=options.num_workers))
  return it


def read_arrays(source, indices: Sequence[int] | None = None, *, chunk: int = 1000
                ) -> dict[str, np.ndarray]:
  """Reads a source into memory: {"image": uint8 [M, H, W, C], "label": int64 [M]}.

  For example the in-distribution test images that `synthetic_ood` mixes.
  """
  indices = range(len(source)) if indices is None else list(indices)
  images, labels = [], []
  for start in range(0, len(indices), chunk):
    part = [int(i) for i in indices[start:start + chunk]]
    items = (source.__getitems__(part) if hasattr(source, "__getitems__")
             else [source[i] for i in part])
    images.extend(np.asarray(item["image"]) for item in items)
    labels.extend(int(item["label"]) for item in items)
  if not images:
    raise ValueError("read_arrays: the source (or the index list) is empty.")
  return {"image": np.stack(images), "label": np.asarray(labels, dtype=np.int64)}


def read_split(source) -> tuple[np.ndarray, np.ndarray]:
  """A whole split in memory for evaluation: `(images uint8 [N, H, W, C], labels int32 [N])`.

  Evaluation sets (validation, test, OOD) are small next to a device's memory (CIFAR's 10,000
  test images are 30 MB), and the evaluation path (`ngebm_jax.evaluation.inference`) batches
  arrays, so every split is read once, here, whatever its source.
  """
  arrays = source.arrays if isinstance(source, ArraySource) else read_arrays(source)
  images = np.asarray(arrays["image"])
  if images.dtype != np.uint8:
    raise ValueError(f"sources must yield uint8 images; got {images.dtype}.")
  return images, np.asarray(arrays["label"], np.int32)
