r"""Prepares a real dataset in a TFDS data_dir, so training and evaluation can read it offline.

With internet (TFDS's own download_and_prepare; needs TensorFlow: pip install tensorflow-cpu):

  python -m experiments.prepare_data --dataset=cifar100 --data_dir=$HOME/tensorflow_datasets

Offline, without TensorFlow, from the official files downloaded by hand:

  python -m experiments.prepare_data --dataset=cifar10 --data_dir=DIR \
      --archive=cifar-10-python.tar.gz            # or cifar-10-binary.tar.gz
  python -m experiments.prepare_data --dataset=cifar100 --data_dir=DIR \
      --archive=cifar-100-python.tar.gz           # or cifar-100-binary.tar.gz
  python -m experiments.prepare_data --dataset=svhn_cropped --data_dir=DIR \
      --archive=train_32x32.mat --archive=test_32x32.mat   # extra_32x32.mat optional
  python -m experiments.prepare_data --dataset=celeb_a --data_dir=DIR \
      --archive=img_align_celeba.zip --archive=list_eval_partition.txt \
      --archive=list_attr_celeba.txt --archive=list_landmarks_align_celeba.txt \
      --archive=identity_CelebA.txt

Files: https://www.cs.toronto.edu/~kriz/cifar.html, http://ufldl.stanford.edu/housenumbers/,
https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (CelebA: the aligned and cropped images'
zip, the evaluation partition, and the attribute, landmark and identity lists that TFDS's
celeb_a features hold).
The result is the dataset TFDS itself writes (same name, version, features, splits, record
order), stored as array_record and read with `tfds.data_source(name, data_dir=DIR)`. Archives are
verified first (members, shapes, label ranges and, with --strict, the official counts); a corrupt
or truncated one is refused with a message saying what is wrong, and nothing is written.
CelebA is an OOD set of the evaluation: its test split (19,962 faces of 218x178) is read
center-cropped to 178x178 (rows 20 to 197) and resized to 32x32 with Pillow's antialiased
bilinear filter. JEM's evaluation code resized with torchvision's `Resize(32)`, which keeps the
aspect ratio (39x32 images, no crop), on an image folder of its own. A dataset already
prepared in DIR is left as it is.
The library behind it is `ngebm_jax.data.prepare`.
"""

from absl import app
from absl import flags

from ngebm_jax.data import prepare

_DATASET = flags.DEFINE_enum("dataset", None, list(prepare.TFDS_DATASETS),
                             "TFDS name of the dataset to prepare.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data directory to prepare it in.")
_ARCHIVE = flags.DEFINE_multi_string(
    "archive", [], "Official archive file(s) for the offline import, without TensorFlow: CIFAR's "
    "python or binary .tar.gz; SVHN's train_32x32.mat / test_32x32.mat / extra_32x32.mat; "
    "CelebA's five files (repeat the flag). Without it, TFDS downloads the dataset.")
_STRICT = flags.DEFINE_bool(
    "strict", True, "Also require the official example counts of the archive (--nostrict "
    "accepts small archives in the official format, e.g. for tests).")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "TFDS path only: folder with manually downloaded files (TFDS's "
    "DownloadConfig.manual_dir).")
flags.mark_flags_as_required(["dataset", "data_dir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {list(argv[1:])}")
  try:
    builder = prepare.prepare(_DATASET.value, _DATA_DIR.value, _ARCHIVE.value,
                              strict=_STRICT.value, manual_dir=_MANUAL_DIR.value)
  except (ValueError, RuntimeError) as e:  # ArchiveError is a ValueError
    raise SystemExit(f"prepare_data: {e}") from e
  splits = {name: split.num_examples for name, split in builder.info.splits.items()}
  print(f"{builder.name} {builder.version} is prepared in {builder.data_dir}: {splits}")


if __name__ == "__main__":
  app.run(main)
