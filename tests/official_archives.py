"""Tiny datasets in the official archive formats, for tests that import real archives.

The files are byte-for-byte in the layouts their publishers distribute: CIFAR-10 / CIFAR-100
python pickles (protocol 2, numpy 1's module path) and binary records in `.tar.gz` archives
with the official member names, and SVHN's MATLAB `train_32x32.mat` / `test_32x32.mat`. The
images are random; sizes are small so that a test prepares them in a second.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile

import numpy as np
import scipy.io

PER_BATCH = 24   # CIFAR-10: 5 train batches -> 120 train images
NUM_TEST = 20


def rows_of(images: np.ndarray) -> np.ndarray:
  """uint8 [n, 32, 32, 3] -> [n, 3072] rows, channel-major as in the official files."""
  return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def _write_tar(path, folder: str, members: dict[str, bytes]) -> str:
  with tarfile.open(path, "w:gz", compresslevel=1) as tar:  # random pixels: no gain from more
    info = tarfile.TarInfo(folder)
    info.type = tarfile.DIRTYPE
    tar.addfile(info)
    for name, data in members.items():
      _add(tar, f"{folder}/{name}", data)
  return os.fspath(path)


def dump_pickle(obj) -> bytes:
  """Protocol 2 with numpy 1's module path, as in the official (python 2) pickles."""
  return pickle.dumps(obj, protocol=2).replace(b"cnumpy._core.multiarray\n",
                                               b"cnumpy.core.multiarray\n")


def make_cifar(name: str, seed: int, per_batch: int = PER_BATCH, num_test: int = NUM_TEST):
  """Random CIFAR-like arrays: split -> {"image", "label"(, "coarse_label")}, and label names."""
  rng = np.random.default_rng(seed)
  n_train = 5 * per_batch
  out = {}
  for split, n in (("train", n_train), ("test", num_test)):
    arrays = {"image": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)}
    if name == "cifar10":
      arrays["label"] = rng.integers(0, 10, n)
    else:
      arrays["label"] = rng.integers(0, 100, n)
      arrays["coarse_label"] = rng.integers(0, 20, n)
    out[split] = arrays
  names = {"label": [f"class_{i}" for i in range(10 if name == "cifar10" else 100)]}
  if name == "cifar100":
    names["coarse_label"] = [f"super_{i}" for i in range(20)]
  return out, names


def write_cifar10_python(path, data, names, **overrides) -> str:
  train, test = data["train"], data["test"]
  per = len(train["image"]) // 5
  members = {}
  for i in range(5):
    part = slice(i * per, (i + 1) * per)
    members[f"data_batch_{i + 1}"] = dump_pickle({
        b"batch_label": f"training batch {i + 1} of 5".encode(),
        b"labels": [int(v) for v in train["label"][part]],
        b"data": rows_of(train["image"][part]),
        b"filenames": [f"img_{j}.png".encode() for j in range(per)]})
  members["test_batch"] = dump_pickle({
      b"batch_label": b"testing batch 1 of 1", b"labels": [int(v) for v in test["label"]],
      b"data": rows_of(test["image"]), b"filenames": [b"x.png"] * len(test["label"])})
  members["batches.meta"] = dump_pickle({
      b"num_cases_per_batch": per, b"label_names": [n.encode() for n in names["label"]],
      b"num_vis": 3072})
  members.update(overrides)
  return _write_tar(path, "cifar-10-batches-py", {k: v for k, v in members.items() if v})


def write_cifar10_binary(path, data, names, **overrides) -> str:
  train, test = data["train"], data["test"]
  per = len(train["image"]) // 5

  def records(arrays, part):
    labels = arrays["label"][part].astype(np.uint8)[:, None]
    return np.concatenate([labels, rows_of(arrays["image"][part])], axis=1).tobytes()

  members = {f"data_batch_{i + 1}.bin": records(train, slice(i * per, (i + 1) * per))
             for i in range(5)}
  members["test_batch.bin"] = records(test, slice(None))
  members["batches.meta.txt"] = ("\n".join(names["label"]) + "\n\n").encode()
  members.update(overrides)
  return _write_tar(path, "cifar-10-batches-bin", {k: v for k, v in members.items() if v})


def write_cifar100_python(path, data, names, **overrides) -> str:
  members = {}
  for split in ("train", "test"):
    arrays = data[split]
    members[split] = dump_pickle({
        b"filenames": [b"f.png"] * len(arrays["label"]), b"batch_label": split.encode(),
        b"fine_labels": [int(v) for v in arrays["label"]],
        b"coarse_labels": [int(v) for v in arrays["coarse_label"]],
        b"data": rows_of(arrays["image"])})
  members["meta"] = dump_pickle({b"fine_label_names": [n.encode() for n in names["label"]],
                           b"coarse_label_names": [n.encode() for n in names["coarse_label"]]})
  members.update(overrides)
  return _write_tar(path, "cifar-100-python", {k: v for k, v in members.items() if v})


def write_cifar100_binary(path, data, names, **overrides) -> str:
  members = {}
  for split in ("train", "test"):
    arrays = data[split]
    labels = np.stack([arrays["coarse_label"], arrays["label"]], axis=1).astype(np.uint8)
    members[f"{split}.bin"] = np.concatenate([labels, rows_of(arrays["image"])], axis=1).tobytes()
  members["coarse_label_names.txt"] = ("\n".join(names["coarse_label"]) + "\n").encode()
  members["fine_label_names.txt"] = ("\n".join(names["label"]) + "\n").encode()
  members.update(overrides)
  return _write_tar(path, "cifar-100-binary", {k: v for k, v in members.items() if v})


WRITERS = {("cifar10", "python"): write_cifar10_python, ("cifar10", "binary"): write_cifar10_binary,
           ("cifar100", "python"): write_cifar100_python,
           ("cifar100", "binary"): write_cifar100_binary}


def write_svhn_mat(path, images: np.ndarray, digits: np.ndarray, **overrides) -> str:
  """SVHN layout: X uint8 [32, 32, 3, N], y uint8 [N, 1] with the digit 0 stored as 10."""
  y = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
  contents = {"X": np.ascontiguousarray(np.moveaxis(images, 0, -1)), "y": y}
  contents.update(overrides)
  scipy.io.savemat(os.fspath(path), contents)
  return os.fspath(path)


def make_svhn(seed: int, n: int):
  rng = np.random.default_rng(seed)
  digits = rng.integers(0, 10, n)
  digits[:3] = 0  # make sure the 10 -> 0 mapping is exercised
  return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), digits


def write_official_archives(folder, *, per_batch: int = PER_BATCH, num_test: int = NUM_TEST,
                            num_svhn: int = 40, seed: int = 0) -> dict[str, str]:
  """Writes `cifar-10-python.tar.gz`, `cifar-100-python.tar.gz`, `train_32x32.mat`,
  `test_32x32.mat` and CelebA's five files (6 faces: 3 train, 1 validation, 2 test) (random
  images, official layouts) into `folder`; returns name -> path."""
  os.makedirs(folder, exist_ok=True)
  out = {}
  for offset, (name, writer, file) in enumerate((
      ("cifar10", write_cifar10_python, "cifar-10-python.tar.gz"),
      ("cifar100", write_cifar100_python, "cifar-100-python.tar.gz"))):
    data, names = make_cifar(name, seed + offset, per_batch, num_test)
    out[file] = writer(os.path.join(folder, file), data, names)
  for offset, file in enumerate(("train_32x32.mat", "test_32x32.mat")):
    out[file] = write_svhn_mat(os.path.join(folder, file), *make_svhn(seed + 2 + offset,
                                                                      num_svhn))
  for path in write_celeba(folder, [0, 0, 1, 2, 0, 2], seed=seed + 4)["paths"]:
    out[os.path.basename(path)] = path
  return out


# CelebA's column names, as the official list files and TFDS's celeb_a builder spell them.
CELEBA_LANDMARKS = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x "
                    "leftmouth_y rightmouth_x rightmouth_y").split()
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young").split()


def celeba_face(colour, seed: int) -> np.ndarray:
  """A 218x178 'aligned face': a plain central 178x178 square, noisy bands above and below."""
  rng = np.random.default_rng(seed)
  face = np.empty((218, 178, 3), np.uint8)
  face[:] = colour
  face[:20] = rng.integers(0, 256, (20, 178, 3))
  face[198:] = rng.integers(0, 256, (20, 178, 3))
  return face


def jpeg_bytes(image: np.ndarray) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=95)
  return buffer.getvalue()


def write_celeba(folder, partition: list[int], *, seed: int = 0,
                 images: dict[str, bytes] | None = None) -> dict[str, object]:
  """CelebA's five official files in `folder`, one image per entry of `partition` (0 train,
  1 validation, 2 test), named 000001.jpg, ...; the lists with CRLF line ends (TFDS and the
  import strip them).

  Returns {"paths": [the five paths], "images": name -> JPEG bytes, "attributes": name -> 40
  values in {-1, 1}, "landmarks": name -> 10 ints, "identity": name -> int}.
  """
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  names = [f"{i + 1:06d}.jpg" for i in range(len(partition))]
  if images is None:
    images = {n: jpeg_bytes(celeba_face(rng.integers(0, 256, 3), seed * 1000 + i))
              for i, n in enumerate(names)}
  attributes = {n: rng.choice([-1, 1], len(CELEBA_ATTRIBUTES)).tolist() for n in names}
  landmarks = {n: rng.integers(50, 180, len(CELEBA_LANDMARKS)).tolist() for n in names}
  identity = {n: int(1000 + i) for i, n in enumerate(names)}
  zip_path = os.path.join(folder, "img_align_celeba.zip")
  with zipfile.ZipFile(zip_path, "w") as z:
    z.writestr("img_align_celeba/", b"")
    for n in names:
      z.writestr(f"img_align_celeba/{n}", images[n])

  def write(file, lines):
    path = os.path.join(folder, file)
    with open(path, "w", newline="") as f:
      f.write("".join(line + "\r\n" for line in lines))
    return path

  paths = [
      zip_path,
      write("list_eval_partition.txt", [f"{n} {p}" for n, p in zip(names, partition)]),
      write("list_attr_celeba.txt", [str(len(names)), " ".join(CELEBA_ATTRIBUTES)] + [
          f"{n} " + " ".join(f"{v:2d}" for v in attributes[n]) for n in names]),
      write("list_landmarks_align_celeba.txt", [str(len(names)), " ".join(CELEBA_LANDMARKS)] + [
          f"{n}    " + "   ".join(str(v) for v in landmarks[n]) for n in names]),
      write("identity_CelebA.txt", [f"{n} {identity[n]}" for n in names]),
  ]
  return dict(paths=paths, images=images, attributes=attributes, landmarks=landmarks,
              identity=identity)
