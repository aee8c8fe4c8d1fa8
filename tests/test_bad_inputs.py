"""Bad input gets a clear error that names the problem and the fix, before any expensive work, and nothing is written.

One row per input: ``(id, make, error, match)`` where ``make(ctx)`` does what a user would do and must raise. After
every row the run folder holds no stage file (nothing was started).
"""

from __future__ import annotations

import copy
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image, Value, concatenate_datasets
from PIL import Image as PILImage

from wmdd_hf import DistillationArguments, Distiller, load_backbone
from wmdd_hf.checkpoint import OutputDirError
from wmdd_hf.data import DatasetValidationError
from wmdd_hf.hub import HubError, HubNetworkError

STAGE_FILES = ("run_config.json", "statistics.pt", "barycenters.pt", "synthetic", "soft_labels.pt", "distilled")


@dataclass
class Ctx:
    tmp: Path
    teacher: object
    train: Dataset

    def args(self, **kw) -> DistillationArguments:
        base = dict(
            output_dir=str(self.tmp / "run"),
            images_per_class=2,
            iterations=2,
            batch_size=20,
            disable_tqdm=True,
            save_plots=False,
        )
        return DistillationArguments(**{**base, **kw})


def _png(value: int) -> dict:
    buf = io.BytesIO()
    PILImage.fromarray(np.full((28, 28), value, dtype=np.uint8)).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def _out_of_range_labels(ctx):
    ints = ctx.train.select(range(40)).cast_column("label", Value("int64"))
    labels = list(ints["label"])
    labels[17] = 12
    ints = ints.remove_columns("label").add_column("label", labels)
    bad = ints.cast_column("label", ClassLabel(names=ctx.train.features["label"].names))
    Distiller(ctx.teacher, ctx.args(), bad)


def _corrupt_image_after_row_8(ctx):
    good = ctx.train.select(range(0, 3000, 30))  # 10 per class
    broken = Dataset.from_dict(
        {"image": [{"bytes": b"\x89PNG not an image", "path": None}], "label": [3]}, features=good.features
    )
    d = Distiller(
        ctx.teacher, ctx.args(), concatenate_datasets([good.select(range(12)), broken, good.select(range(12, 100))])
    )
    d.distill()


def _ipc_above_class_size_with_noise(ctx):
    few = ctx.train.filter(lambda r: r["label"] != 4 or r["image"] is None, input_columns=None)
    index = [i for i, y in enumerate(ctx.train["label"]) if y == 4][:3]
    few = concatenate_datasets([few, ctx.train.select(index)])
    Distiller(ctx.teacher, ctx.args(images_per_class=5, init="noise"), few)


def _cap_below_ipc_with_real_init(ctx):
    ctx.args(images_per_class=10, max_features_per_class=5, init="real")


def _push_with_bad_repo_id(ctx):
    ctx.args(push_to_hub=True, hub_dataset_id="user/bad--name")


def _push_without_token(ctx):
    Distiller(ctx.teacher, ctx.args(push_to_hub=True, hub_dataset_id="tester/set", hub_token=None), ctx.train)


def _push_with_wrong_token(ctx):
    Distiller(ctx.teacher, ctx.args(push_to_hub=True, hub_dataset_id="tester/set", hub_token="hf_wrong"), ctx.train)


def _push_while_offline(ctx):
    import socket

    from huggingface_hub import constants

    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    old = constants.ENDPOINT
    constants.ENDPOINT = f"http://127.0.0.1:{port}"
    try:
        Distiller(ctx.teacher, ctx.args(push_to_hub=True, hub_dataset_id="tester/set", hub_token="hf_x"), ctx.train)
    finally:
        constants.ENDPOINT = old


def _missing_relative_teacher(ctx):
    Distiller("checkpoints/no-such-teacher", ctx.args(), ctx.train)


def _no_image_column(ctx):
    ds = Dataset.from_dict(
        {"x": [1, 2], "label": [0, 1]},
        features=Features({"x": Value("int64"), "label": ClassLabel(names=[str(i) for i in range(10)])}),
    )
    Distiller(ctx.teacher, ctx.args(), ds)


def _empty_class(ctx):
    Distiller(ctx.teacher, ctx.args(), ctx.train.filter(lambda y: y != 6, input_columns="label"))


def _streaming_resume(ctx):
    stream = ctx.train.select(range(0, 3000, 10)).to_iterable_dataset()
    (ctx.tmp / "run").mkdir()
    d = Distiller(ctx.teacher, ctx.args(), stream)
    import json

    (ctx.tmp / "run" / "run_config.json").write_text(json.dumps(d._run_config()))  # as a first run would
    d.distill()


def _colour_data_for_a_grey_teacher(ctx):
    rgb = ctx.train.select(range(0, 3000, 10)).cast_column("image", Image(mode="RGB"))
    assert rgb[0]["image"].mode == "RGB"
    Distiller(ctx.teacher, ctx.args(), rgb)


def _teacher_classes_in_another_order(ctx):
    teacher = copy.deepcopy(ctx.teacher)
    teacher.class_names = list(reversed(ctx.train.features["label"].names))
    Distiller(teacher, ctx.args(), ctx.train)


ROWS = [
    ("label out of range", _out_of_range_labels, DatasetValidationError, r"Column 'label' holds label 12 in row 17"),
    ("corrupt image after row 8", _corrupt_image_after_row_8, DatasetValidationError, r"row 12 cannot be decoded"),
    (
        "IPC above a class size (noise)",
        _ipc_above_class_size_with_noise,
        DatasetValidationError,
        r"'Coat' \(3\) have fewer than 5 .* Lower images_per_class",
    ),
    ("cap below IPC (real)", _cap_below_ipc_with_real_init, ValueError, r"max_features_per_class=5 is below"),
    ("bad repo id", _push_with_bad_repo_id, HubError, r"not a valid Hub dataset id"),
    ("no token", _push_without_token, HubError, r"No valid Hub token"),
    ("wrong token", _push_with_wrong_token, HubError, r"No valid Hub token"),
    ("network down", _push_while_offline, HubNetworkError, r"network failure, not a token problem"),
    (
        "missing relative teacher path",
        _missing_relative_teacher,
        ValueError,
        r"No folder checkpoints/no-such-teacher .* not a timm model name",
    ),
    ("no image column", _no_image_column, DatasetValidationError, r"No image column"),
    ("empty class", _empty_class, DatasetValidationError, r"'Shirt' \(0\)"),
    ("streaming resume", _streaming_resume, OutputDirError, r"streaming dataset.*overwrite_output_dir=True"),
    (
        "colour data, grey teacher",
        _colour_data_for_a_grey_teacher,
        DatasetValidationError,
        r"in colour \(mode RGB, 3 channels\) but the teacher takes 1 channel.*Image\(mode='L'\)",
    ),
    (
        "teacher classes in another order",
        _teacher_classes_in_another_order,
        DatasetValidationError,
        r"dataset's in another order .*'T-shirt/top', 'Trouser'.*'Ankle boot', 'Bag'.*class_mapping='by_name'",
    ),
]


@pytest.mark.parametrize("name, make, error, match", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_is_stopped_before_any_stage(name, make, error, match, tmp_path, tiny_teacher, small_train, hub):
    ctx = Ctx(tmp_path, tiny_teacher, small_train)
    with pytest.raises(error, match=match):
        make(ctx)
    for stage_file in STAGE_FILES:
        if name == "streaming resume" and stage_file == "run_config.json":
            continue  # planted by the row itself
        assert not (tmp_path / "run" / stage_file).exists(), f"{stage_file} was written"
    assert not hub.repos, "something was pushed"


def test_network_failure_is_not_called_a_token_problem():
    assert issubclass(HubNetworkError, HubError) and issubclass(HubNetworkError, ConnectionError)


def test_a_mistyped_dataset_name_fails_at_once_saying_what_was_looked_for(hub, tmp_path, monkeypatch):
    import time

    from huggingface_hub import constants

    from wmdd_hf import load_image_dataset

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(DatasetValidationError, match=r"no local folder 'someone/fashoin_mnist'.*no Hub dataset"):
        load_image_dataset("someone/fashoin_mnist", "train")  # the double answers 404 for a repo it lacks
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused at once
    start = time.time()
    with pytest.raises(DatasetValidationError, match=r"no local folder 'fashoin_mnist'.*Hub is unreachable.*OFFLINE"):
        load_image_dataset("fashoin_mnist", "train")
    assert time.time() - start < 10, "the lookup retried instead of failing once"


# ---- backbone inputs (no run folder involved) ------------------------------------------------------------------
def _tiny_transformers_resnet():
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=10)
    return ResNetForImageClassification(config)


def test_transformers_model_runs_at_the_size_asked():
    b = load_backbone(_tiny_transformers_resnet(), img_size=32, mean=(0.3,), std=(0.4,))
    assert b.spec.size == (32, 32)  # not the config's 224


def test_transformers_model_with_position_embeddings_rejects_another_size():
    from transformers import ViTConfig, ViTForImageClassification

    vit = ViTForImageClassification(
        ViTConfig(
            image_size=28,
            patch_size=7,
            num_channels=1,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
        )
    )
    with pytest.raises(ValueError, match="position embeddings for 28 px"):
        load_backbone(vit, img_size=32)
    assert load_backbone(vit, img_size=28).spec.size == (28, 28)


def test_transformers_model_without_processor_warns_and_takes_mean_std(caplog):
    with caplog.at_level(logging.WARNING, logger="wmdd_hf.backbones"):
        b = load_backbone(_tiny_transformers_resnet())
    assert "no image processor: normalising with mean=(0.5,), std=(0.5,)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wmdd_hf.backbones"):
        b = load_backbone(_tiny_transformers_resnet(), mean=(0.286,), std=(0.353,))
    assert not caplog.text
    torch.testing.assert_close(b.mean.flatten(), torch.tensor([0.286]))


def test_nan_advice_names_flags_that_work():
    from wmdd_hf.synthesis import NonFiniteLossError

    message = str(NonFiniteLossError(3, [1, 2]))
    assert "--overwrite_output_dir True" in message and "--learning_rate" in message


def test_corrupt_image_in_a_stream_names_the_row_and_the_class(tmp_path, tiny_teacher, small_train):
    good = small_train.select(range(0, 3000, 30))
    broken = Dataset.from_dict(
        {"image": [{"bytes": b"\x89PNG not an image", "path": None}], "label": [3]}, features=good.features
    )
    stream = concatenate_datasets([good.select(range(40)), broken, good.select(range(40, 100))]).to_iterable_dataset()
    ctx = Ctx(tmp_path, tiny_teacher, small_train)
    with pytest.raises(DatasetValidationError, match=r"streamed row 40 \(class 3"):
        Distiller(tiny_teacher, ctx.args(), stream).distill()
    assert not (tmp_path / "run" / "statistics.pt").exists()
