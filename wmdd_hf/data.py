"""From `datasets` image-classification data to tensors the backbones eat.

Images travel as ``uint8`` tensors of shape ``(C, H, W)`` at the backbone's input size and channel count; the
backbone adapter (:mod:`wmdd_hf.backbones`) turns them into normalised floats itself. Synthetic images are therefore
optimised in plain pixel space ``[0, 1]`` and written out as PNG without any de-normalisation step.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, Image, IterableDataset, Value
from PIL import Image as PILImage

logger = logging.getLogger(__name__)

#: Debian's dataset-fashion-mnist files; WMDD_HF_FASHION_MNIST_DIR points elsewhere (a machine without the package).
FASHION_MNIST_DIR = Path(os.environ.get("WMDD_HF_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_HUB_ID = "zalando-datasets/fashion_mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
#: Bumped whenever ImageSpec.to_uint8 changes what it returns (part of the decode cache key).
DECODE_VERSION = 2
#: Decoded images up to this many bytes are cached in memory as one uint8 array (the fast path for small datasets).
DECODED_CACHE_LIMIT_BYTES = 2 * 1024**3

AnyImageDataset = Dataset | IterableDataset


def default_cache_dir() -> Path:
    """``$WMDD_HF_CACHE`` or ``~/.cache/wmdd_hf``."""
    return Path(os.environ.get("WMDD_HF_CACHE", Path.home() / ".cache" / "wmdd_hf"))


# --------------------------------------------------------------------------------------------------------------------
# Fashion-MNIST, the embedded default
# --------------------------------------------------------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion_mnist_from_idx(folder: Path) -> DatasetDict:
    features = Features({"image": Image(), "label": ClassLabel(names=FASHION_MNIST_CLASSES)})
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        labels = _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
        rows = {"image": [PILImage.fromarray(a) for a in images], "label": labels.astype(np.int64).tolist()}
        info = DatasetInfo(
            dataset_name=FASHION_MNIST_HUB_ID,
            description=f"Fashion-MNIST {split} split, read from Debian's dataset-fashion-mnist IDX files.",
            license="mit",
            features=features,
        )
        splits[split] = Dataset.from_dict(rows, features=features, info=info, split=split)
    return DatasetDict(splits)


def load_fashion_mnist(
    cache_dir: str | os.PathLike | None = None,
    idx_dir: str | os.PathLike | None = None,
    rgb: bool = False,
    size: int = 28,
) -> DatasetDict:
    """Fashion-MNIST as a ``DatasetDict(train=60000, test=10000)`` with ``image`` (Image) and ``label`` (ClassLabel).

    Built from the IDX files of Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``)
    and cached with ``save_to_disk`` in ``<cache_dir>/fashion_mnist-v2`` (``cache_dir`` defaults to
    :func:`default_cache_dir`) after the first build (~10 s). The library writes only inside its own subfolders and
    never deletes anything else. Without the Debian files it falls back to
    ``load_dataset("zalando-datasets/fashion_mnist")``.

    ``rgb=True`` stores each grey image in three equal channels and ``size`` resizes it (bilinear) to
    ``size x size`` pixels: ``rgb=True, size=32`` is the second teacher family's data (R = G = B everywhere, so a
    set distilled from it should stay grey). Cached in ``fashion_mnist-rgb32-v1`` (or ``-l<size>-v1``).
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if rgb or size != 28:
        name = f"fashion_mnist-{'rgb' if rgb else 'l'}{size}-v1"
        return _cached(root, name, lambda: _resized(load_fashion_mnist(root, idx_dir), rgb, size))
    folder = Path(idx_dir) if idx_dir is not None else FASHION_MNIST_DIR
    return _cached(root, "fashion_mnist-v2", lambda: _fashion_mnist_source(folder))


def _fashion_mnist_source(folder: Path) -> DatasetDict:
    if (folder / "train-images-idx3-ubyte.gz").exists():
        logger.info("Building Fashion-MNIST from %s", folder)
        return _fashion_mnist_from_idx(folder)
    try:
        from datasets import load_dataset

        return load_dataset(FASHION_MNIST_HUB_ID)
    except Exception as error:  # noqa: BLE001 - any failure means: no data anywhere
        raise FileNotFoundError(
            f"Fashion-MNIST was not found in {folder} and could not be loaded from the Hub "
            f"({FASHION_MNIST_HUB_ID}: {error.__class__.__name__}). Install Debian's package with "
            "`apt-get install dataset-fashion-mnist` (after `apt-get update`), or pass another dataset."
        ) from error


def _resized(dataset: DatasetDict, rgb: bool, size: int) -> DatasetDict:
    mode = "RGB" if rgb else "L"

    def convert(batch: dict) -> dict:
        images = [image.convert(mode) for image in batch["image"]]
        if size != 28:
            images = [image.resize((size, size), PILImage.BILINEAR) for image in images]
        return {"image": images}

    return dataset.map(convert, batched=True, batch_size=1000, desc=f"Fashion-MNIST as {mode} {size} px")


def _cached(root: Path, name: str, build) -> DatasetDict:
    """``root/name`` loaded with ``load_from_disk``, built with ``build()`` and saved there first if missing."""
    cache = root / name
    if (cache / "dataset_dict.json").exists():
        return DatasetDict.load_from_disk(str(cache))
    if cache.exists() and any(cache.iterdir()):
        raise FileExistsError(
            f"{cache} exists, is not empty and holds no saved dataset: the library will not overwrite it. Move it "
            "away or pass another cache_dir."
        )
    dataset = build()
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{name}.{os.getpid()}.tmp"  # one name per process: parallel first runs do not collide
    dataset.save_to_disk(str(tmp))
    try:
        if cache.exists():
            cache.rmdir()  # empty (checked above)
        tmp.rename(cache)
    except OSError:  # another process finished first: its copy is as good as ours
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return DatasetDict.load_from_disk(str(cache))


# --------------------------------------------------------------------------------------------------------------------
# Columns and validation
# --------------------------------------------------------------------------------------------------------------------
class DatasetValidationError(ValueError):
    """The dataset cannot be distilled as given; the message says what to change."""


def detect_columns(
    features: Features | None, image_column: str | None = None, label_column: str | None = None
) -> tuple[str, str]:
    """Names of the image and label columns, auto-detected from the features unless given.

    Raises :class:`DatasetValidationError` when there is no ``Image`` column or no ``ClassLabel`` column.
    """
    if features is None:
        raise DatasetValidationError(
            "The dataset has no known features (a streaming dataset without `features`); "
            "call `dataset = dataset.cast(features)` or pass `image_column` and `label_column`."
        )
    names = list(features)
    if image_column is None:
        candidates = [n for n, f in features.items() if isinstance(f, Image)]
        if not candidates:
            raise DatasetValidationError(
                f"No image column found among {names}: the dataset needs a column of the `datasets.Image` feature. "
                "Cast it with `dataset.cast_column(name, datasets.Image())` or pass `image_column=`."
            )
        image_column = candidates[0]
    elif image_column not in features:
        raise DatasetValidationError(
            f"image_column={image_column!r} is not a column of the dataset (columns: {names})."
        )
    if label_column is None:
        candidates = [n for n, f in features.items() if isinstance(f, ClassLabel)]
        if not candidates:
            ints = [n for n, f in features.items() if isinstance(f, Value) and f.dtype.startswith("int")]
            hint = (
                f" Integer column(s) {ints} have no class names: cast with "
                f"`dataset = dataset.cast_column({ints[0]!r}, datasets.ClassLabel(names=[...]))`."
                if ints
                else ""
            )
            raise DatasetValidationError(f"No ClassLabel column found among {names}.{hint}")
        label_column = candidates[0]
    elif label_column not in features:
        raise DatasetValidationError(
            f"label_column={label_column!r} is not a column of the dataset (columns: {names})."
        )
    if not isinstance(features[label_column], ClassLabel):
        raise DatasetValidationError(
            f"Column {label_column!r} is {features[label_column]!r}, not a ClassLabel: cast with "
            f"`dataset = dataset.cast_column({label_column!r}, datasets.ClassLabel(names=[...]))`."
        )
    return image_column, label_column


def class_names(dataset: AnyImageDataset, label_column: str) -> list[str]:
    return list(dataset.features[label_column].names)


def labels_array(dataset: Dataset, label_column: str) -> np.ndarray:
    """All labels as an ``int64`` array, read from Arrow without decoding any image (``select``/``shuffle``
    indices mappings are honoured)."""
    labels = np.asarray(dataset.data.column(label_column).to_numpy(zero_copy_only=False), dtype=np.int64)
    if dataset._indices is not None:
        labels = labels[np.asarray(dataset._indices.column(0).to_numpy(zero_copy_only=False), dtype=np.int64)]
    return labels


def class_index(dataset: Dataset, label_column: str) -> dict[int, np.ndarray]:
    """``{class id: row indices}`` for every class of the ClassLabel (empty arrays for absent classes)."""
    labels = labels_array(dataset, label_column)
    num_classes = dataset.features[label_column].num_classes
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(num_classes + 1))
    return {k: order[bounds[k] : bounds[k + 1]] for k in range(num_classes)}


#: PIL modes that hold one grey channel (``LA``: grey with alpha); every other mode is treated as colour.
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def image_channels(image: PILImage.Image) -> int:
    """1 for a grey PIL image (:data:`GREY_MODES`), 3 for anything in colour (RGB, RGBA, P, CMYK, ...)."""
    return 1 if image.mode in GREY_MODES else 3


def validate_dataset(
    dataset: AnyImageDataset,
    image_column: str | None = None,
    label_column: str | None = None,
    num_classes: int | None = None,
    min_per_class: int = 1,
    check_images: int = 8,
    channels: int | None = None,
) -> tuple[str, str]:
    """Checks a dataset before any expensive work and returns ``(image_column, label_column)``.

    Checks: an Image and a ClassLabel column; the number of classes equals ``num_classes`` (the teacher's) when
    given; every class has at least ``min_per_class`` rows (map-style datasets); the first ``check_images`` images
    decode (the failing row index is reported); with ``channels`` (the teacher's input channels), colour images
    for a 1-channel teacher are an error (a grey conversion would silently drop the colour), grey images for a
    3-channel teacher a warning (the synthetic images may drift apart in R, G and B).
    """
    image_column, label_column = detect_columns(dataset.features, image_column, label_column)
    names = class_names(dataset, label_column)
    if num_classes is not None and len(names) != num_classes:
        raise DatasetValidationError(
            f"The dataset has {len(names)} classes but the teacher predicts {num_classes}: use a teacher trained on "
            "this dataset (see examples/train_teacher.py) or a dataset with the teacher's classes."
        )
    if isinstance(dataset, Dataset):
        labels = labels_array(dataset, label_column)
        bad = np.flatnonzero((labels < 0) | (labels >= len(names)))
        if len(bad):
            row = int(bad[0])
            raise DatasetValidationError(
                f"Column {label_column!r} holds label {int(labels[row])} in row {row} ({len(bad)} row(s) in all), "
                f"outside the ClassLabel's {len(names)} classes (0..{len(names) - 1}). Fix or filter those rows, "
                "or cast the column to a ClassLabel with all the classes."
            )
        counts = np.bincount(labels, minlength=len(names))
        short = [f"{names[k]!r} ({counts[k]})" for k in range(len(names)) if counts[k] < min_per_class]
        if short:
            raise DatasetValidationError(
                f"Class(es) {', '.join(short)} have fewer than {min_per_class} example(s) in the dataset, but every "
                f"class needs at least images_per_class = {min_per_class} (one real image per barycenter point). "
                "Lower images_per_class, or filter the ClassLabel to the classes that have enough images."
            )
        images = [decode_row(dataset, i, image_column) for i in range(min(check_images, len(dataset)))]
    else:
        images = [row[image_column] for _, row in zip(range(1), dataset)]  # a stream: its first row only
    if channels is not None:
        check_channels(images, channels)
    return image_column, label_column


def check_channels(images: list[PILImage.Image], channels: int) -> None:
    """Raises when colour images meet a 1-channel teacher; warns when grey images meet a 3-channel one."""
    found = {image_channels(image) for image in images if isinstance(image, PILImage.Image)}
    modes = sorted({image.mode for image in images if isinstance(image, PILImage.Image)})
    if channels == 1 and 3 in found:
        raise DatasetValidationError(
            f"The dataset's images are in colour (mode {'/'.join(modes)}, 3 channels) but the teacher takes 1 "
            "channel: the images would be converted to grey and the distilled set written in grey. Use a teacher "
            "trained on 3-channel images (examples/train_teacher.py takes the channels from the data), or make the "
            "dataset grey first: `dataset = dataset.cast_column(image_column, datasets.Image(mode='L'))`."
        )
    if channels == 3 and found == {1}:
        logger.warning(
            "The dataset's images are grey (mode %s, 1 channel) but the teacher takes 3 channels: each image is "
            "copied into R, G and B, and the synthetic images may come out in colour.",
            "/".join(modes),
        )


def teacher_class_order(
    dataset_names: list[str], teacher_names: list[str], class_mapping: str | dict[str, str] | None = None
) -> list[int] | None:
    """Which teacher logit belongs to each dataset class: ``order[k]`` is the teacher's index for the dataset's class
    ``k``, or ``None`` when they are the same (or a side has no names, only ``"0", "1", ...``).

    ``class_mapping``: ``"by_name"`` (the same names in another order) or ``{dataset class name: teacher class
    name}`` for every dataset class (a JSON string of it from the command line). Without one, the same names in
    another order are an error, and different names a warning that names both lists: the count alone matches.
    """
    if isinstance(class_mapping, str) and class_mapping != "by_name":
        import json

        try:
            class_mapping = json.loads(class_mapping)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"class_mapping={class_mapping!r} is neither 'by_name' nor a JSON object "
                '{"dataset class": "teacher class", ...}.'
            ) from error
    if class_mapping == "by_name":
        if sorted(dataset_names) != sorted(teacher_names):
            raise DatasetValidationError(
                f"class_mapping='by_name' needs the same class names on both sides: the dataset has "
                f"{dataset_names}, the teacher {teacher_names}. Pass a mapping {{dataset class: teacher class}}."
            )
        class_mapping = {name: name for name in dataset_names}
    if class_mapping is not None:
        if not isinstance(class_mapping, dict):
            raise ValueError(f"class_mapping must be 'by_name' or a dict, not {type(class_mapping).__name__}.")
        missing = [n for n in dataset_names if n not in class_mapping]
        unknown = [v for v in class_mapping.values() if v not in teacher_names]
        targets = [class_mapping[n] for n in dataset_names if n in class_mapping]
        if missing or unknown or len(set(targets)) != len(targets):
            raise DatasetValidationError(
                f"class_mapping must map every dataset class {dataset_names} to a different teacher class "
                f"{teacher_names}; missing: {missing}, not the teacher's: {unknown}."
            )
        order = [teacher_names.index(class_mapping[n]) for n in dataset_names]
        return None if order == list(range(len(order))) else order
    placeholder = [str(i) for i in range(len(teacher_names))]
    if dataset_names == teacher_names or placeholder in (teacher_names, dataset_names):
        return None
    if sorted(dataset_names) == sorted(teacher_names):
        raise DatasetValidationError(
            f"The teacher's classes are the dataset's in another order (dataset: {dataset_names}; teacher: "
            f"{teacher_names}): its logit k is not the dataset's label k. Pass class_mapping='by_name' to match them "
            "by name, or a mapping {dataset class: teacher class}."
        )
    logger.warning(
        "The teacher's class names differ from the dataset's (dataset: %s; teacher: %s). Label k of the dataset is "
        "taken to be the teacher's class k; if that is wrong, pass class_mapping={dataset class: teacher class}.",
        dataset_names,
        teacher_names,
    )
    return None


def decode_row(dataset: Dataset, index: int, image_column: str) -> PILImage.Image:
    try:
        image = dataset[index][image_column]
        if not isinstance(image, PILImage.Image):
            raise TypeError(f"decoded to {type(image).__name__}")
        image.load()
        return image
    except Exception as error:  # noqa: BLE001 - report any decoding failure with its row
        raise DatasetValidationError(
            f"The image in row {index} (column {image_column!r}) cannot be decoded: {error}"
        ) from error


# --------------------------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageSpec:
    """What a backbone wants: ``channels`` (1 or 3) and ``(height, width)`` in pixels."""

    channels: int
    size: tuple[int, int]

    def to_uint8(self, image: PILImage.Image) -> torch.Tensor:
        """PIL image -> ``uint8`` tensor ``(C, H, W)``: grayscale/RGB converted, shorter side resized, centre crop."""
        image = image.convert("L" if self.channels == 1 else "RGB")
        h, w = self.size
        if image.size != (w, h):
            scale = max(h / image.height, w / image.width)
            new = (max(w, round(image.width * scale)), max(h, round(image.height * scale)))
            image = image.resize(new, PILImage.BILINEAR)
            left, top = (image.width - w) // 2, (image.height - h) // 2
            image = image.crop((left, top, left + w, top + h))
        array = np.asarray(image, dtype=np.uint8)
        if array.ndim == 2:
            array = array[None]
        else:
            array = array.transpose(2, 0, 1)
        return torch.from_numpy(array.copy())


class _Decoded(torch.utils.data.Dataset):
    def __init__(self, dataset: Dataset, spec: ImageSpec, image_column: str, label_column: str):
        self.dataset, self.spec, self.image_column, self.label_column = dataset, spec, image_column, label_column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        try:
            row = self.dataset[int(i)]
            return self.spec.to_uint8(row[self.image_column]), int(row[self.label_column]), int(i)
        except Exception as error:  # noqa: BLE001
            raise DatasetValidationError(f"The image in row {i} cannot be decoded: {error}") from error


def _collate(batch):
    images, labels, rows = zip(*batch)
    return torch.stack(images), torch.tensor(labels), torch.tensor(rows)


def decode_all(
    dataset: Dataset, spec: ImageSpec, image_column: str, label_column: str, num_workers: int = 0, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image as one ``uint8`` tensor ``(N, C, H, W)`` and labels ``(N,)``; cached on disk by fingerprint."""
    cache = default_cache_dir() / "decoded" / f"{decode_cache_key(dataset, spec, image_column, label_column)}.pt"
    if cache.exists():  # memory-mapped: a process that keeps only its share never reads the rest
        data = torch.load(cache, weights_only=True, mmap=True)
        return data["images"], data["labels"]
    images, labels = [], []
    for batch_images, batch_labels, _ in iterate_batches(
        dataset,
        spec,
        image_column,
        label_column,
        batch_size=512,
        num_workers=num_workers,
        progress=progress,
        desc="decoding",
    ):
        images.append(batch_images)
        labels.append(batch_labels)
    result = torch.cat(images), torch.cat(labels)
    from .checkpoint import atomic_path

    with atomic_path(cache) as tmp:
        torch.save({"images": result[0], "labels": result[1]}, tmp)
    return result


def decode_cache_key(dataset: Dataset, spec: ImageSpec, image_column: str, label_column: str) -> str:
    """What the decoded array depends on: the data (fingerprint), the columns, the size/channels and the library
    version (whose decoding rules may change)."""
    import hashlib

    from . import __version__

    parts = (DECODE_VERSION, __version__, dataset._fingerprint, image_column, label_column, spec.channels, *spec.size)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


def fits_in_memory(dataset: AnyImageDataset, spec: ImageSpec) -> bool:
    if not isinstance(dataset, Dataset):
        return False
    return len(dataset) * spec.channels * spec.size[0] * spec.size[1] <= DECODED_CACHE_LIMIT_BYTES


def iterate_batches(
    dataset: AnyImageDataset,
    spec: ImageSpec,
    image_column: str,
    label_column: str,
    batch_size: int = 256,
    num_workers: int = 0,
    indices: Iterable[int] | None = None,
    progress: bool = False,
    desc: str = "",
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yields ``(images uint8 (B, C, H, W), labels int64 (B,), row ids int64 (B,))``.

    Map-style datasets go through a ``DataLoader`` (``num_workers`` processes decode in parallel), optionally over
    ``indices`` only; ``IterableDataset`` (streaming) rows are decoded as they arrive, row ids counting from 0.
    Nothing keeps more than one batch of decoded images.
    """
    from tqdm.auto import tqdm

    if isinstance(dataset, Dataset):
        source = _Decoded(dataset, spec, image_column, label_column)
        if indices is not None:
            source = torch.utils.data.Subset(source, list(indices))
        loader = torch.utils.data.DataLoader(
            source, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate
        )
        yield from tqdm(loader, desc=desc, disable=not progress, leave=False)
        return
    batch: list = []
    feature = (dataset.features or {}).get(image_column)
    if isinstance(feature, Image) and feature.decode:  # decode here, so that a failure names its row and class
        dataset = dataset.cast_column(image_column, Image(decode=False))
    for row_id, row in enumerate(tqdm(dataset, desc=desc, disable=not progress, leave=False)):
        try:
            value = row[image_column]
            image = spec.to_uint8(Image().decode_example(value) if isinstance(value, dict) else value)
        except Exception as error:  # noqa: BLE001 - report any decoding failure with its row and class
            raise DatasetValidationError(
                f"The image in streamed row {row_id} (class {row.get(label_column)!r}, column {image_column!r}) "
                f"cannot be decoded: {error}. Nothing after the statistics checkpoint of a previous run was changed."
            ) from error
        batch.append((image, int(row[label_column]), row_id))
        if len(batch) == batch_size:
            yield _collate(batch)
            batch = []
    if batch:
        yield _collate(batch)


def uint8_to_png_images(images: torch.Tensor) -> list[PILImage.Image]:
    """``(N, C, H, W)`` uint8 or float in [0, 1] -> list of PIL images (mode L or RGB)."""
    if images.dtype != torch.uint8:
        images = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8)
    out = []
    for image in images.cpu().numpy():
        out.append(PILImage.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)))
    return out


def load_image_dataset(
    name: str, split: str | None = None, streaming: bool = False, **kwargs
) -> AnyImageDataset | DatasetDict:
    """``"fashion_mnist"`` (the embedded default), ``"fashion_mnist_rgb32"`` (its RGB copy at 32 px), a folder written by ``save_to_disk``, an image folder, a folder of
    parquet files, or a Hub dataset id; ``split`` selects one split."""
    from datasets import load_dataset, load_from_disk

    if name in ("fashion_mnist", "fashion-mnist"):
        dataset = load_fashion_mnist()
    elif name == "fashion_mnist_rgb32":
        dataset = load_fashion_mnist(rgb=True, size=32)
    elif Path(name).is_dir() and (
        (Path(name) / "dataset_dict.json").exists() or (Path(name) / "dataset_info.json").exists()
    ):
        dataset = load_from_disk(name)
    else:
        _check_findable(name)
        dataset = load_dataset(name, streaming=streaming, **kwargs)
    if split is not None and isinstance(dataset, dict):
        if split not in dataset:
            raise DatasetValidationError(f"Split {split!r} is not in {name!r} (splits: {list(dataset)}).")
        return dataset[split]
    return dataset


def _check_findable(name: str) -> None:
    """Before ``load_dataset`` on a name that is not a local folder: one Hub lookup, so that a mistyped name or an
    unreachable Hub fails at once, saying what was looked for, instead of after the Hub client's retries. With
    ``HF_HUB_OFFLINE`` set, ``load_dataset`` reads the cache and nothing is looked up."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    if Path(name).expanduser().exists() or constants.HF_HUB_OFFLINE:
        return
    local = f"There is no local folder {name!r} (looked from {Path.cwd()})"
    unreachable: tuple[type[BaseException], ...] = (OSError,)  # requests' connection errors (huggingface_hub < 1)
    try:
        import httpx  # huggingface_hub >= 1 speaks httpx

        unreachable += (httpx.TransportError,)
    except ImportError:
        pass
    try:
        HfApi().dataset_info(name, timeout=10)
    except GatedRepoError:
        return  # it exists; load_dataset says how to get access
    except RepositoryNotFoundError as e:
        raise DatasetValidationError(
            f"{local}, and no Hub dataset {name!r} (a private one needs `hf auth login` or HF_TOKEN)."
        ) from e
    except HFValidationError as e:
        raise DatasetValidationError(f"{local}, and {name!r} is not a Hub dataset id ('user/name').") from e
    except unreachable as e:  # no network, a refused connection, a timeout
        raise DatasetValidationError(
            f"{local}, and the Hub is unreachable ({type(e).__name__}: {e}). A dataset already in the local cache "
            "loads with HF_HUB_OFFLINE=1."
        ) from e


def train_validation_split(
    dataset: Dataset, validation_size: int = 5000, seed: int = 0, label_column: str | None = None
) -> tuple[Dataset, Dataset]:
    """``(train, validation)``: a fixed, seeded, class-stratified part of ``dataset`` held out for choosing budgets and
    hyper-parameters. Distillation and baselines draw only from ``train``; nothing is ever chosen on the test split.
    The same ``(validation_size, seed)`` gives the same rows on every machine."""
    _, label_column = detect_columns(dataset.features, None, label_column)
    if not 0 < validation_size < len(dataset):
        raise ValueError(f"validation_size={validation_size} must be between 1 and {len(dataset) - 1}.")
    parts = dataset.train_test_split(test_size=validation_size, seed=seed, stratify_by_column=label_column)
    return parts["train"], parts["test"]
