import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image, Value
from PIL import Image as PILImage

from wmdd_hf.data import (
    FASHION_MNIST_CLASSES,
    DatasetValidationError,
    ImageSpec,
    class_index,
    decode_all,
    detect_columns,
    iterate_batches,
    labels_array,
    load_fashion_mnist,
    validate_dataset,
)


def _toy(n_per_class=(3, 3), mode="RGB", size=(12, 10), label_feature=None):
    rng = np.random.default_rng(0)
    images, labels = [], []
    for k, n in enumerate(n_per_class):
        for _ in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            images.append(PILImage.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode))
            labels.append(k)
    feature = label_feature or ClassLabel(names=[f"c{k}" for k in range(len(n_per_class))])
    return Dataset.from_dict(
        {"picture": images, "target": labels}, features=Features({"picture": Image(), "target": feature})
    )


def test_fashion_mnist_loader(fashion_mnist):
    assert set(fashion_mnist) == {"train", "test"}
    assert len(fashion_mnist["train"]) == 60000 and len(fashion_mnist["test"]) == 10000
    features = fashion_mnist["train"].features
    assert isinstance(features["image"], Image)
    assert features["label"].names == FASHION_MNIST_CLASSES
    counts = np.bincount(labels_array(fashion_mnist["train"], "label"))
    assert counts.tolist() == [6000] * 10
    assert np.bincount(labels_array(fashion_mnist["test"], "label")).tolist() == [1000] * 10
    image = fashion_mnist["train"][0]["image"]
    assert image.size == (28, 28) and image.mode == "L"


def test_fashion_mnist_missing_everywhere_names_the_package(tmp_path, monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(cache_dir=tmp_path / "cache", idx_dir=tmp_path / "nothing")


def test_columns_are_detected_whatever_their_names():
    ds = _toy()
    assert detect_columns(ds.features) == ("picture", "target")


def test_no_image_column():
    ds = Dataset.from_dict(
        {"x": [1, 2], "label": [0, 1]}, features=Features({"x": Value("int64"), "label": ClassLabel(names=["a", "b"])})
    )
    with pytest.raises(DatasetValidationError, match="No image column"):
        validate_dataset(ds)


def test_integer_labels_without_names_say_how_to_cast():
    ds = _toy(label_feature=Value("int64"))
    with pytest.raises(DatasetValidationError, match=r"cast_column\('target', datasets.ClassLabel"):
        validate_dataset(ds)


def test_class_with_zero_examples():
    ds = _toy(n_per_class=(3, 0, 2))
    with pytest.raises(DatasetValidationError, match="'c1' \\(0\\)"):
        validate_dataset(ds)


def test_teacher_class_count_mismatch():
    with pytest.raises(DatasetValidationError, match="2 classes but the teacher predicts 10"):
        validate_dataset(_toy(), num_classes=10)


def test_undecodable_image_reports_the_row():
    good = _toy(n_per_class=(2, 2))
    rows = [{"bytes": b"\x89PNG broken", "path": None}]
    bad = Dataset.from_dict({"picture": rows, "target": [1]}, features=good.features)
    from datasets import concatenate_datasets

    ds = concatenate_datasets([good, bad])
    with pytest.raises(DatasetValidationError, match="row 4"):
        validate_dataset(ds)


def test_image_spec_converts_modes_and_sizes():
    rgb = PILImage.fromarray(np.full((10, 20, 3), 200, dtype=np.uint8))
    gray = ImageSpec(1, (8, 8)).to_uint8(rgb)
    assert gray.shape == (1, 8, 8) and gray.dtype == torch.uint8 and int(gray[0, 0, 0]) == 200
    color = ImageSpec(3, (28, 28)).to_uint8(PILImage.fromarray(np.zeros((28, 28), dtype=np.uint8)))
    assert color.shape == (3, 28, 28)


def test_labels_of_a_selected_subset_are_the_subsets():
    ds = _toy(n_per_class=(2, 3)).select([4, 0, 3])
    assert labels_array(ds, "target").tolist() == [1, 0, 1]
    assert class_index(ds, "target")[1].tolist() == [0, 2]
    with pytest.raises(DatasetValidationError, match="fewer than 2"):
        validate_dataset(ds, min_per_class=2)


def test_class_index_without_decoding():
    ds = _toy(n_per_class=(2, 3))
    index = class_index(ds, "target")
    assert index[0].tolist() == [0, 1] and index[1].tolist() == [2, 3, 4]


def test_iterate_map_style_and_streaming_give_the_same_batches():
    ds = _toy(n_per_class=(3, 4), size=(6, 6))
    spec = ImageSpec(3, (6, 6))
    mapped = list(iterate_batches(ds, spec, "picture", "target", batch_size=4))
    streamed = list(iterate_batches(ds.to_iterable_dataset(), spec, "picture", "target", batch_size=4))
    assert len(mapped) == len(streamed) == 2
    for (a, la, ra), (b, lb, rb) in zip(mapped, streamed):
        assert torch.equal(a, b) and torch.equal(la, lb) and torch.equal(ra, rb)
    images, labels = decode_all(ds, spec, "picture", "target", progress=False)
    assert images.shape == (7, 3, 6, 6) and labels.tolist() == [0, 0, 0, 1, 1, 1, 1]


def test_fashion_mnist_never_touches_a_foreign_folder(tmp_path):
    root = tmp_path / "mine"
    (root / "fashion_mnist-v2").mkdir(parents=True)
    (root / "fashion_mnist-v2" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="will not overwrite it"):
        load_fashion_mnist(cache_dir=root)
    assert (root / "fashion_mnist-v2" / "thesis.tex").read_text() == "precious"
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("keep")
    data = load_fashion_mnist(cache_dir=other)  # builds inside its own subfolder
    assert len(data["test"]) == 10000 and (other / "keep.txt").read_text() == "keep"
    assert sorted(p.name for p in other.iterdir()) == ["fashion_mnist-v2", "keep.txt"]


def test_decode_cache_key_follows_data_columns_and_size():
    from wmdd_hf.data import ImageSpec, decode_cache_key

    ds = _toy()
    base = decode_cache_key(ds, ImageSpec(1, (28, 28)), "picture", "target")
    assert base == decode_cache_key(ds, ImageSpec(1, (28, 28)), "picture", "target")
    assert base != decode_cache_key(ds, ImageSpec(3, (28, 28)), "picture", "target")
    assert base != decode_cache_key(ds, ImageSpec(1, (32, 32)), "picture", "target")
    assert base != decode_cache_key(ds.select([0, 1]), ImageSpec(1, (28, 28)), "picture", "target")


def test_two_processes_building_the_cache_at_once_both_succeed(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\nfrom wmdd_hf import load_fashion_mnist\n"
        "d = load_fashion_mnist(cache_dir=sys.argv[1])\nprint(len(d['train']))\n"
    )
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1].decode()[-2000:] for o in outs]
    assert [o[0].decode().split()[-1] for o in outs] == ["60000", "60000"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fashion_mnist-v2"]  # no temporary left behind


def _write_idx(path, array: np.ndarray) -> None:
    import gzip

    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_rgb_copy_is_the_grey_image_in_three_channels_at_32_px(tmp_path):
    rng = np.random.default_rng(0)
    idx = tmp_path / "idx"
    idx.mkdir()
    grey = {}
    for prefix, n in (("train", 12), ("t10k", 4)):
        grey[prefix] = rng.integers(0, 256, (n, 28, 28))
        _write_idx(idx / f"{prefix}-images-idx3-ubyte.gz", grey[prefix])
        _write_idx(idx / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    data = load_fashion_mnist(cache_dir=tmp_path / "cache", idx_dir=idx, rgb=True, size=32)
    assert len(data["train"]) == 12 and len(data["test"]) == 4
    image = data["train"][5]["image"]
    assert image.mode == "RGB" and image.size == (32, 32)
    a = np.asarray(image)
    expected = np.asarray(PILImage.fromarray(grey["train"][5].astype(np.uint8)).resize((32, 32), PILImage.BILINEAR))
    for channel in range(3):
        np.testing.assert_array_equal(a[..., channel], expected)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["fashion_mnist-rgb32-v1", "fashion_mnist-v2"]
