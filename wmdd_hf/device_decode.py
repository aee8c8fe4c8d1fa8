"""Decoding on the accelerator, for the statistics pass over an encoded dataset too large to decode into memory.

JPEG bytes go to nvJPEG in batches (``torchvision.io.decode_jpeg(list, device="cuda")``); other formats (PNG, ...)
are decoded on the CPU by ``torchvision.io.decode_image``. Resizing (the shorter side to the teacher's, bilinear with
antialiasing) and the centre crop run on the device, by the rule of :meth:`wmdd_hf.data.ImageSpec.to_uint8`, so the
pixels agree with the CPU path within a few grey levels (two decoders and two resamplers); the CPU path stays the one
for data that fits in memory and for every other device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from datasets import Dataset, Image

from .data import DatasetValidationError, ImageSpec

JPEG_MAGIC = b"\xff\xd8\xff"


def decodes_on_device(dataset, image_column: str, device: torch.device) -> bool:
    """Whether :func:`iterate_device_batches` serves this pass: a CUDA device, torchvision present, and a map-style
    dataset whose image column is a ``datasets.Image`` feature (stored as bytes or paths)."""
    if device.type != "cuda" or not isinstance(dataset, Dataset):
        return False
    try:
        import torchvision.io  # noqa: F401
    except ImportError:
        return False
    return isinstance(dataset.features.get(image_column), Image)


def iterate_device_batches(
    dataset: Dataset,
    spec: ImageSpec,
    image_column: str,
    label_column: str,
    batch_size: int,
    device: torch.device | str,
    indices: Iterable[int] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yields ``(images uint8 (B, C, H, W) on device, labels int64 (B,), rows int64 (B,))`` like
    :func:`wmdd_hf.data.iterate_batches`, decoding and resizing on ``device``."""
    raw, device = dataset.cast_column(image_column, Image(decode=False)), torch.device(device)
    rows = list(range(len(raw))) if indices is None else [int(i) for i in indices]

    def batches():
        for s in range(0, len(rows), batch_size):
            chunk = rows[s : s + batch_size]
            part = raw[chunk]  # a list of rows gives columns of lists, one row too
            images = decode_on_device(part[image_column], chunk, spec, device)
            yield images, torch.tensor(part[label_column], dtype=torch.long), torch.tensor(chunk, dtype=torch.long)

    return prefetched(batches(), device) if device.type == "cuda" else batches()


def prefetched(batches: Iterator[tuple], device: torch.device, depth: int = 2) -> Iterator[tuple]:
    """``batches`` (``(images on device, ...)`` tuples) produced by a background thread, up to ``depth`` ahead, so
    that decoding the next batch overlaps the teacher's work on this one; on CUDA the thread works on a stream of its
    own and each batch is ready on the consumer's stream when yielded. An error in the thread is raised here."""
    import queue
    import threading

    ready: queue.Queue = queue.Queue(maxsize=depth)
    cuda = device.type == "cuda"
    stop, stream, end = threading.Event(), torch.cuda.Stream(device) if cuda else None, object()

    def work():
        try:
            with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
                for batch in batches:
                    event = torch.cuda.Event() if cuda else None
                    if cuda:
                        event.record(stream)
                    while not stop.is_set():
                        try:
                            ready.put((batch, event), timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            ready.put((end, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer
            ready.put((error, None))

    thread = threading.Thread(target=work, daemon=True, name="wmdd_hf-decode")
    thread.start()
    try:
        while True:
            batch, event = ready.get()
            if batch is end:
                return
            if isinstance(batch, BaseException):
                raise batch
            if cuda:
                current = torch.cuda.current_stream(device)
                current.wait_event(event)
                batch[0].record_stream(current)
            yield batch
    finally:
        stop.set()


def decode_on_device(values: list[dict], rows: list[int], spec: ImageSpec, device: torch.device) -> torch.Tensor:
    """``values``: a batch of ``{"bytes", "path"}`` cells of an Image column; returns ``uint8 (B, C, H, W)``."""
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    mode = ImageReadMode.GRAY if spec.channels == 1 else ImageReadMode.RGB
    raw = [_bytes_of(v, r) for v, r in zip(values, rows)]
    encoded = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in raw]
    jpeg = [i for i, b in enumerate(raw) if b[:3] == JPEG_MAGIC]
    decoded: list[torch.Tensor | None] = [None] * len(encoded)
    if jpeg:
        on = device if device.type == "cuda" else "cpu"
        for i, image in zip(jpeg, decode_jpeg([encoded[i] for i in jpeg], mode=mode, device=on)):
            decoded[i] = image
    for i, e in enumerate(encoded):
        if decoded[i] is None:
            try:
                decoded[i] = decode_image(e, mode=mode)
            except RuntimeError as error:
                raise DatasetValidationError(f"The image in row {rows[i]} cannot be decoded: {error}") from error
    return torch.stack([fit(image.to(device), spec.size) for image in decoded])


def fit(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``uint8 (C, h, w)`` -> ``uint8 (C, H, W)``: the shorter side scaled to cover ``size`` (bilinear, antialiased),
    then the centre crop (the rule of :meth:`wmdd_hf.data.ImageSpec.to_uint8`)."""
    h, w = size
    height, width = image.shape[-2:]
    if (height, width) == (h, w):
        return image
    scale = max(h / height, w / width)
    new = (max(h, round(height * scale)), max(w, round(width * scale)))
    resized = F.interpolate(image[None].float(), size=new, mode="bilinear", antialias=True, align_corners=False)[0]
    top, left = (new[0] - h) // 2, (new[1] - w) // 2
    return resized[:, top : top + h, left : left + w].round_().clamp_(0, 255).to(torch.uint8)


def _bytes_of(value: dict, row: int) -> bytes:
    if value.get("bytes") is not None:
        return value["bytes"]
    if value.get("path"):
        with open(value["path"], "rb") as f:
            return f.read()
    raise DatasetValidationError(f"The image in row {row} has neither bytes nor a path.")
