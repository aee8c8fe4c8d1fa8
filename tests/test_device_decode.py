"""The decoder of the statistics pass for encoded data on a GPU, run here on the CPU (the same code path but the
JPEG decoder's device): the pixels agree with the CPU path's (PIL) within a few grey levels."""

import io

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage

from wmdd_hf.data import DatasetValidationError, ImageSpec, iterate_batches
from wmdd_hf.device_decode import decodes_on_device, iterate_device_batches


def _smooth(rng, height, width, mode):
    """A smooth random image (as photographs are; resampling differences are largest on pixel noise)."""
    coarse = rng.integers(0, 255, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    image = PILImage.fromarray(coarse).resize((width, height), PILImage.BICUBIC)
    return image.convert(mode)


def _encoded(fmt, sizes, mode="RGB"):
    rng = np.random.default_rng(0)
    cells, labels = [], []
    for i, (h, w) in enumerate(sizes):
        buffer = io.BytesIO()
        options = {"quality": 95} if fmt == "JPEG" else {}
        _smooth(rng, h, w, mode).save(buffer, format=fmt, **options)
        cells.append({"bytes": buffer.getvalue(), "path": None})
        labels.append(i % 2)
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b"])})
    return Dataset.from_dict({"image": cells, "label": labels}, features=features)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("channels", [3, 1])
def test_device_decoding_matches_the_cpu_path_within_a_few_grey_levels(fmt, channels):
    data = _encoded(fmt, [(64, 48), (40, 80), (32, 32), (96, 96), (50, 70)])
    spec = ImageSpec(channels, (32, 32))
    reference = list(iterate_batches(data, spec, "image", "label", batch_size=2))
    batches = list(iterate_device_batches(data, spec, "image", "label", 2, torch.device("cpu")))
    assert len(batches) == len(reference) == 3
    for (images, labels, rows), (ref_images, ref_labels, ref_rows) in zip(batches, reference):
        assert images.dtype == torch.uint8 and images.shape == ref_images.shape
        assert torch.equal(labels, ref_labels) and torch.equal(rows, ref_rows)
        gap = (images.int() - ref_images.int()).abs().float()
        assert gap.mean() < 0.75 and gap.max() <= 2, (gap.mean(), gap.max())  # measured: 0.12-0.51, 1-2


def test_device_decoding_keeps_the_rows_it_is_given_and_names_a_broken_one():
    data = _encoded("PNG", [(32, 32)] * 4)
    images, labels, rows = next(
        iterate_device_batches(data, ImageSpec(3, (32, 32)), "image", "label", 8, "cpu", [3, 1])
    )
    assert rows.tolist() == [3, 1] and labels.tolist() == [1, 1] and images.shape == (2, 3, 32, 32)
    broken = data.cast_column("image", Image(decode=False)).map(
        lambda row, i: {"image": {"bytes": b"not an image" if i == 2 else row["image"]["bytes"], "path": None}},
        with_indices=True,
    )
    broken = broken.cast_column("image", Image())
    with pytest.raises(DatasetValidationError, match="row 2"):
        list(iterate_device_batches(broken, ImageSpec(3, (32, 32)), "image", "label", 8, torch.device("cpu")))


def test_only_a_cuda_device_and_an_image_column_decode_on_the_device():
    data = _encoded("PNG", [(32, 32)] * 2)
    assert not decodes_on_device(data, "image", torch.device("cpu"))
    assert decodes_on_device(data, "image", torch.device("cuda"))
    assert not decodes_on_device(data.to_iterable_dataset(), "image", torch.device("cuda"))


def test_prefetching_keeps_the_order_raises_the_producers_error_and_stops_with_the_consumer():
    from wmdd_hf.device_decode import prefetched

    made = []

    def batches(fail_at=None):
        for i in range(6):
            if i == fail_at:
                raise ValueError(f"batch {i} is broken")
            made.append(i)
            yield (torch.full((2,), i),)

    assert [int(b[0][0]) for b in prefetched(batches(), torch.device("cpu"))] == list(range(6))
    with pytest.raises(ValueError, match="batch 3 is broken"):
        list(prefetched(batches(fail_at=3), torch.device("cpu")))
    made.clear()
    stream = prefetched(batches(), torch.device("cpu"), depth=1)
    next(stream)
    stream.close()  # the consumer stops: the producer does not run on through the data
    import time

    time.sleep(0.5)
    assert len(made) <= 3
