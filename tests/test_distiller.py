import json

import numpy as np
import pytest
import torch
from datasets import load_dataset
from transformers import TrainerCallback

from wmdd_hf import DistillationArguments, Distiller
from wmdd_hf.arguments import RESEARCH_FIELDS
from wmdd_hf.checkpoint import OutputDirError, read_events
from wmdd_hf.data import DatasetValidationError


class Recorder(TrainerCallback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.events.append(("begin", state.stage))

    def on_step_end(self, args, state, control, **kwargs):
        self.events.append(("step", state.global_step))

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.events.append(("log", logs))

    def on_train_end(self, args, state, control, **kwargs):
        self.events.append(("end", state.stage))


def _args(tmp_path, **kw):
    defaults = dict(
        output_dir=str(tmp_path / "run"),
        images_per_class=2,
        iterations=80,
        logging_steps=10,
        batch_size=10,
        disable_tqdm=True,
        soft_label_epochs=2,
    )
    defaults.update(kw)
    research = {k: defaults.pop(k) for k in list(defaults) if k in RESEARCH_FIELDS}
    return DistillationArguments(**defaults, research_options=research)


def test_end_to_end_on_fashion_mnist(tmp_path, tiny_teacher, small_train, small_test):
    recorder = Recorder()
    distiller = Distiller(tiny_teacher, _args(tmp_path), small_train, small_test, callbacks=[recorder])
    distilled = distiller.distill()
    assert len(distilled) == 2 * 10
    assert distilled.features["label"].names == small_train.features["label"].names
    folder = tmp_path / "run" / "distilled"
    loaded = load_dataset(str(folder), split="train")
    assert len(loaded) == 20 and loaded.features == distilled.features
    assert sorted(loaded["label"]) == sorted([k for k in range(10) for _ in range(2)])
    views = load_dataset(str(folder), "soft_labels", split="train")
    assert len(views) == 2 * 20 and views[21]["epoch"] == 1 and views[21]["image_index"] == 1
    m = distiller.metrics
    assert m["feature_loss_end"] <= 0.5 * m["feature_loss_start"], m
    assert m["teacher_agreement"] > 0.3  # chance is 0.1
    assert m["colour_spread"] == 0.0  # grey images
    # distances to the barycenter points, the real side recomputed here with numpy for one class
    assert len(m["point_distances"]) == 10 and 0 <= m["classes_closer_than_median_real"] <= 10
    stats = distiller.compute_statistics()
    points = np.asarray(distiller.compute_barycenters(stats).positions[3], dtype=np.float64)
    real = stats.features[3].double().numpy()
    nearest = np.sqrt(((real[:, None, :] - points[None]) ** 2).sum(-1)).min(1)
    assert m["point_distances"]["3"]["real_median_to_nearest_point"] == pytest.approx(np.median(nearest), rel=1e-4)
    assert m["point_distances"]["3"]["synthetic_to_own_point"] > 0
    for name in ("synthetic_grid.png", "barycenters_pca.png", "metrics.json"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    kinds = [e[0] for e in recorder.events]
    assert kinds[0] == "begin" and kinds[-1] == "end" and "step" in kinds and "log" in kinds
    logged = [e[1] for e in recorder.events if e[0] == "log"]
    assert any("feature_loss" in r and r["stage"] == "synthesis" for r in logged)
    # the soft labels are the teacher's probabilities on the stored (PNG) pixels
    first = loaded[0]
    pixels = torch.from_numpy(np.asarray(first["image"], dtype=np.float32))[None, None] / 255
    with torch.no_grad():
        probs = torch.softmax(tiny_teacher(pixels)[0], 1)[0]
    torch.testing.assert_close(torch.tensor(first["soft_label"]), probs, atol=2e-3, rtol=0)
    # evaluate(): students on the set, tested on the real split; the result lands in the card
    result = distiller.evaluate(seeds=(0,), steps=3, student_kwargs={"width": 8}, progress=False)
    assert result["seeds"] == [0] and result["protocol"]["steps"] == 3
    card = (folder / "README.md").read_text()
    assert "## Evaluation" in card and f"{100 * result['acc_mean']:.2f}" in card
    assert "configs:" in card  # re-rendering keeps the configs
    assert "loss scale `mean`" in card  # lambda is read with its scale
    assert "| `images_per_class` | `2` |" in card and "| `iterations` | `80` |" in card  # set by this run
    assert "`barycenter_solver`" not in card and "`output_dir`" not in card  # defaults and paths stay in the json


def test_rerun_resumes_and_different_arguments_are_refused(tmp_path, tiny_teacher, small_train):
    args = _args(tmp_path, iterations=5, soft_label_epochs=0)
    first = Distiller(tiny_teacher, args, small_train)
    first.distill()
    assert first.metrics["resumed"] == {"statistics": False, "barycenter": False, "synthesis_batches": 0}
    synthesized = [e for e in read_events(args.output_dir) if e["stage"] == "synthesis"]
    assert len(synthesized) == 2  # 10 classes, 5 per batch
    again = Distiller(tiny_teacher, args, small_train)
    again.distill()
    assert again.state.skipped_batches == 2 and again.state.synthesized_batches == 0
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["resumed"] == {"statistics": True, "barycenter": True, "synthesis_batches": 2}
    assert len([e for e in read_events(args.output_dir) if e["stage"] == "synthesis"]) == 2
    with pytest.raises(OutputDirError, match=r"bn_weight: 10.0 -> 0.5"):
        Distiller(
            tiny_teacher, _args(tmp_path, iterations=5, soft_label_epochs=0, bn_weight=0.5), small_train
        ).distill()
    fresh = Distiller(
        tiny_teacher,
        _args(tmp_path, iterations=5, soft_label_epochs=0, bn_weight=0.5, overwrite_output_dir=True),
        small_train,
    )
    fresh.distill()
    assert fresh.state.synthesized_batches == 2
    assert json.loads((tmp_path / "run" / "run_config.json").read_text())["bn_weight"] == 0.5


def test_a_run_from_before_loss_scale_existed_resumes_only_with_its_own_scale(tmp_path, tiny_teacher, small_train):
    """The default loss_scale changed ('sum' -> 'mean'): a run folder written before the argument existed was run
    with 'sum', so resuming it with the new default is refused instead of mixing two losses in one set."""
    args = _args(tmp_path, iterations=2, soft_label_epochs=0, loss_scale="sum", bn_weight=0.1, save_plots=False)
    Distiller(tiny_teacher, args, small_train).distill()
    path = tmp_path / "run" / "run_config.json"
    config = json.loads(path.read_text())
    del config["loss_scale"]  # as an older version wrote it
    path.write_text(json.dumps(config))
    with pytest.raises(OutputDirError, match=r"loss_scale: None -> 'mean'"):
        Distiller(
            tiny_teacher, _args(tmp_path, iterations=2, soft_label_epochs=0, bn_weight=0.1), small_train
        ).distill()
    again = Distiller(tiny_teacher, args, small_train)
    again.distill()
    assert again.state.synthesized_batches == 0 and again.state.skipped_batches == 2


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"images_per_class": 0}, ValueError, "images_per_class=0"),
        ({"feature_loss": "mmd"}, ValueError, "feature_loss='mmd'"),
        ({"bn_loss": "batch"}, ValueError, "bn_loss='batch'"),
        ({"barycenter_weights": "free"}, ValueError, "barycenter_weights"),
        ({"init": "zeros"}, ValueError, "init='zeros'"),
        ({"feature_pool": "max"}, ValueError, "feature_pool='max'"),
        ({"push_to_hub": True}, ValueError, "hub_dataset_id"),
        ({"hub_dataset_id": "not a repo"}, ValueError, "user/name"),
    ],
)
def test_bad_arguments_fail_at_construction(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        _args(tmp_path, **kwargs)


def test_ipc_larger_than_smallest_class_with_real_init(tmp_path, tiny_teacher, small_train):
    with pytest.raises(DatasetValidationError, match="fewer than 301"):
        Distiller(tiny_teacher, _args(tmp_path, images_per_class=301, init="real"), small_train)
    assert not (tmp_path / "run").exists()  # nothing started


def test_per_class_bn_without_norm_layers(tmp_path, small_train):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    from wmdd_hf import load_backbone

    teacher = load_backbone(net, in_chans=1, img_size=28)
    with pytest.raises(ValueError, match="use bn_loss='none'"):
        Distiller(teacher, _args(tmp_path), small_train)
    Distiller(teacher, _args(tmp_path, bn_loss="none"), small_train)  # accepted


def test_teacher_and_dataset_disagree_on_classes(tmp_path, small_train):
    from wmdd_hf import load_backbone

    teacher = load_backbone("wmdd_convnet", num_classes=7, in_chans=1, width=8, pretrained=False)
    with pytest.raises(DatasetValidationError, match="10 classes but the teacher predicts 7"):
        Distiller(teacher, _args(tmp_path), small_train)


def test_non_finite_loss_keeps_finished_batches(tmp_path, tiny_teacher, small_train):
    from wmdd_hf.synthesis import NonFiniteLossError

    args = _args(tmp_path, iterations=3, learning_rate=1.0, soft_label_epochs=0)
    d = Distiller(tiny_teacher, args, small_train)
    original = d.compute_barycenters

    def poisoned(stats):
        bary = original(stats)
        bary.positions[7][0, 0] = float("nan")  # class 7 lives in the second batch
        return bary

    d.compute_barycenters = poisoned
    with pytest.raises(NonFiniteLossError, match="iteration 0"):
        d.distill()
    assert (tmp_path / "run" / "synthetic" / "batch_00000.pt").exists()
    assert not (tmp_path / "run" / "synthetic" / "batch_00001.pt").exists()


def test_streaming_dataset_is_distilled_without_random_access(tmp_path, tiny_teacher, small_train):
    subset = small_train.select(range(0, 3000, 3))
    stream = subset.to_iterable_dataset()
    d = Distiller(tiny_teacher, _args(tmp_path, iterations=5, soft_label_epochs=0), stream)
    distilled = d.distill()
    assert len(distilled) == 20
    stats = d.compute_statistics()
    assert stats.counts.tolist() == np.bincount(subset["label"], minlength=10).astype(float).tolist()
    with pytest.raises(DatasetValidationError, match="init='real' needs a map-style Dataset"):
        Distiller(tiny_teacher, _args(tmp_path / "x", init="real"), stream)


def test_save_distilled_never_deletes_what_the_library_did_not_write(tmp_path, tiny_teacher, small_train):
    d = Distiller(tiny_teacher, _args(tmp_path, iterations=2, soft_label_epochs=0, save_plots=False), small_train)
    d.distill()
    run = tmp_path / "run"
    before = sorted(p.name for p in run.iterdir())
    for target in (run, tmp_path):  # the run folder itself, and a parent of it
        with pytest.raises(FileExistsError):
            d.save_distilled(target)
    assert sorted(p.name for p in run.iterdir()) == before and (run / "statistics.pt").exists()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(FileExistsError, match="not a distilled set written by wmdd_hf"):
        d.save_distilled(foreign)
    assert (foreign / "cat.jpg").read_bytes() == b"meow"
    copy = d.save_distilled(tmp_path / "copy")
    assert len(load_dataset(str(copy), split="train")) == 20
    d.save_distilled(tmp_path / "copy")  # replacing its own earlier copy is fine
    assert not list(tmp_path.glob(".*.tmp"))


def test_init_from_real_images_picks_the_nearest_real_image_of_each_point(tmp_path, tiny_teacher, small_train):
    """Checked against the statistics and barycenters directly: for every point, the image it starts from is the
    real image of its class (not taken by an earlier point) whose teacher feature is nearest to it."""
    d = Distiller(
        tiny_teacher, _args(tmp_path, iterations=1, init="real", soft_label_epochs=0, learning_rate=1e-6), small_train
    )
    d.distill()
    stats, bary = d.compute_statistics(), d.compute_barycenters(d.compute_statistics())
    ours = np.stack([np.asarray(im, dtype=np.int64) for im in d.distilled["image"]])
    for k in range(10):
        feats = stats.features[k].double().numpy()
        rows = np.asarray(stats.rows[k])
        taken = []
        for j, point in enumerate(np.asarray(bary.positions[k], dtype=np.float64)):
            dist = ((feats - point) ** 2).sum(1)
            dist[taken] = np.inf
            best = int(dist.argmin())
            taken.append(best)
            real = np.asarray(small_train[int(rows[best])]["image"], dtype=np.int64)
            assert np.abs(real - ours[2 * k + j]).max() <= 1, (k, j)
            assert small_train[int(rows[best])]["label"] == d.distilled["label"][2 * k + j] == k


def test_init_from_patches_starts_from_crops_the_teacher_recognises(tmp_path, tiny_teacher, small_train):
    args = _args(tmp_path, iterations=1, init="patches", soft_label_epochs=0, learning_rate=1e-6, save_plots=False)
    d = Distiller(tiny_teacher, args, small_train)
    distilled = d.distill()
    assert len(distilled) == 20
    # every tile is a crop the teacher scored highest for the image's class: upsampled back to full size, most tiles
    # are recognised (chance 0.1). The whole 2x2 mosaic at 28 px is not (measured: 0.1), which the sweep weighs.
    import torch.nn.functional as F

    images = (
        torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32)) for im in distilled["image"]])[:, None] / 255
    )
    tiles = torch.cat([images[:, :, r * 14 : (r + 1) * 14, q * 14 : (q + 1) * 14] for r in range(2) for q in range(2)])
    labels = torch.tensor(distilled["label"]).repeat(4)
    with torch.no_grad():
        pred = tiny_teacher(F.interpolate(tiles, size=(28, 28), mode="bilinear"))[0].argmax(1)
    assert float((pred == labels).float().mean()) >= 0.5
    with pytest.raises(DatasetValidationError, match="init='patches' needs a map-style Dataset"):
        Distiller(tiny_teacher, _args(tmp_path / "x", init="patches"), small_train.to_iterable_dataset())


def test_augmented_statistics_describe_the_views_synthesis_sees(tmp_path, tiny_teacher, small_train):
    """statistics_view='augmented': every kept feature is the teacher's feature of one view of its real image,
    drawn from the synthesis augmentation (crop_scale_min, flip) by (seed, row) alone."""
    from wmdd_hf.augment import apply_views
    from wmdd_hf.statistics import row_views

    args = _args(tmp_path, iterations=1, statistics_view="augmented", crop_scale_min=0.3, save_plots=False, seed=7)
    d = Distiller(tiny_teacher, args, small_train)
    d.distill()
    stats = d.compute_statistics()
    views = args.synthesis_config().augment
    assert views.scale == (0.3, 1.0)
    for k in (0, 9):
        rows = stats.rows[k]
        real = torch.stack([torch.from_numpy(np.asarray(small_train[int(r)]["image"], dtype=np.float32)) for r in rows])
        with torch.no_grad():
            clean = tiny_teacher(real[:, None] / 255)[1]
            seen = tiny_teacher(apply_views(real[:, None] / 255, row_views(rows, views, seed=7)))[1]
        torch.testing.assert_close(stats.features[k], seen, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(stats.features[k], clean, rtol=1e-3, atol=1e-3)


def test_pooled_features_are_what_the_barycenters_and_synthesis_see(tmp_path, tiny_teacher, small_train):
    """feature_pool='avg': the kept features are the teacher's last map averaged over positions (width 16 values,
    not the flattened 16 x 7 x 7 map), and the barycenter points live in that space."""
    args = _args(tmp_path, iterations=2, feature_pool="avg", save_plots=False)
    d = Distiller(tiny_teacher, args, small_train)
    d.distill()
    stats = d.compute_statistics()
    for k in (0, 9):
        rows = stats.rows[k][:20]
        real = torch.stack([torch.from_numpy(np.asarray(small_train[int(r)]["image"], dtype=np.float32)) for r in rows])
        with torch.no_grad():
            fmap = tiny_teacher.model.features(tiny_teacher.normalize(real[:, None] / 255))
        assert fmap.shape[1:] == (16, 7, 7)
        torch.testing.assert_close(stats.features[k][:20], fmap.mean((2, 3)), rtol=1e-4, atol=1e-4)
    from wmdd_hf.checkpoint import load

    points = load(tmp_path / "run" / "barycenters.pt")
    assert tuple(points[0]["positions"].shape) == (2, 16)
    assert d.metrics["point_distances"]


def test_torch_compile_gives_the_uncompiled_set_and_compiles_once_for_every_class_batch(
    tmp_path, tiny_teacher, small_train
):
    from torch._dynamo.utils import counters

    small = small_train.select(range(0, 3000, 10))  # 30 per class
    options = dict(iterations=5, soft_label_epochs=0, batch_size=4)  # five class batches
    plain = Distiller(tiny_teacher, _args(tmp_path / "a", **options), small).distill()
    compiled_args = _args(tmp_path / "b", torch_compile=True, **options)
    compiled_args.torch_compile_backend = "aot_eager"  # dynamo + autograd tracing, no C++ toolchain needed
    distiller = Distiller(tiny_teacher, compiled_args, small)
    counters.clear()
    compiled = distiller.distill()
    assert distiller.teacher.model._compiled_call_impl is not None  # compiled in place, names unchanged
    # one graph for synthesis whatever the number of class batches (new hooks each batch), one for the no-grad
    # labelling after it; no graph break (a break compiles every block apart, and dynamo gives up after 8)
    assert not counters["graph_break"] and counters["stats"]["unique_graphs"] <= 2, dict(counters)
    a = np.stack([np.asarray(im) for im in plain["image"]]).astype(int)
    b = np.stack([np.asarray(im) for im in compiled["image"]]).astype(int)
    assert np.abs(a - b).max() <= 1 and compiled["label"] == plain["label"]


def _permuted(teacher, order, names):
    """The same teacher with its logits in ``order`` (built by hand: the head's rows and the names)."""
    import copy

    permuted = copy.deepcopy(teacher)
    with torch.no_grad():
        permuted.head.weight.copy_(teacher.head.weight[order])
        permuted.head.bias.copy_(teacher.head.bias[order])
    permuted.class_names = names
    return permuted


@pytest.mark.parametrize("mapping", ["by_name", "json"])
def test_class_mapping_puts_the_teacher_in_the_dataset_order(mapping, tmp_path, tiny_teacher, small_train):
    names = small_train.features["label"].names
    order = list(range(9, -1, -1))
    if mapping == "by_name":
        permuted, class_mapping = _permuted(tiny_teacher, order, [names[i] for i in order]), "by_name"
    else:  # other names: the user says which is which
        permuted = _permuted(tiny_teacher, order, [f"class {i}" for i in order])
        class_mapping = json.dumps({n: f"class {i}" for i, n in enumerate(names)})
    before = permuted.head.weight.clone()
    args = DistillationArguments(output_dir=str(tmp_path / "run"), images_per_class=2, class_mapping=class_mapping)
    d = Distiller(permuted, args, small_train)
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(d.teacher(x)[0], tiny_teacher.eval()(x)[0])
    assert d.teacher.class_names == (names if mapping == "by_name" else [f"class {i}" for i in range(10)])
    assert torch.equal(permuted.head.weight, before), "the caller's teacher was changed"


def test_teacher_class_names_that_differ_are_a_warning_naming_both(tmp_path, tiny_teacher, small_train, caplog):
    import copy

    other = copy.deepcopy(tiny_teacher)
    other.class_names = [f"kind {i}" for i in range(10)]
    with caplog.at_level("WARNING", logger="wmdd_hf"):
        Distiller(other, DistillationArguments(output_dir=str(tmp_path / "run"), images_per_class=2), small_train)
    text = caplog.text
    assert "'T-shirt/top'" in text and "'kind 0'" in text and "class_mapping" in text


def test_a_class_mapping_that_misses_a_class_is_refused(tmp_path, tiny_teacher, small_train):
    names = small_train.features["label"].names
    partial = json.dumps({n: n for n in names[:9]})
    args = DistillationArguments(output_dir=str(tmp_path / "run"), images_per_class=2, class_mapping=partial)
    with pytest.raises(DatasetValidationError, match=r"missing: \['Ankle boot'\]"):
        Distiller(tiny_teacher, args, small_train)


def _total_variation(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.diff(dim=-1).abs().mean() + pixels.diff(dim=-2).abs().mean()


def _pixels(dataset) -> np.ndarray:
    return np.stack([np.asarray(im, dtype=np.float64) for im in dataset["image"]]) / 255


def test_a_subclass_adds_a_loss_term_by_overriding_synthesis_loss(tmp_path, tiny_teacher, small_train):
    """The hook is the objective: returning super()'s value gives the plain set bit for bit, and a total-variation
    term added there makes smoother images than the plain objective does from the same start."""
    seen = []

    class Same(Distiller):
        def synthesis_loss(self, terms):
            seen.append((tuple(terms.pixels.shape), tuple(terms.features.shape), terms.iteration))
            return super().synthesis_loss(terms)

    class Smooth(Distiller):
        def synthesis_loss(self, terms):
            return super().synthesis_loss(terms) + 1000.0 * _total_variation(terms.pixels)

    options = dict(iterations=30, soft_label_epochs=0, save_plots=False)
    plain = Distiller(tiny_teacher, _args(tmp_path / "plain", **options), small_train).distill()
    same = Same(tiny_teacher, _args(tmp_path / "same", **options), small_train).distill()
    smooth = Smooth(tiny_teacher, _args(tmp_path / "smooth", **options), small_train).distill()
    np.testing.assert_array_equal(_pixels(plain), _pixels(same))
    assert seen[0] == ((10, 1, 28, 28), (10, 16 * 7 * 7), 0) and len(seen) == 2 * 30  # 2 batches of 5 classes

    def tv(images: np.ndarray) -> float:
        return float(np.abs(np.diff(images, axis=-1)).mean() + np.abs(np.diff(images, axis=-2)).mean())

    assert tv(_pixels(smooth)) < 0.7 * tv(_pixels(plain)), (tv(_pixels(smooth)), tv(_pixels(plain)))


def test_the_stages_run_one_by_one_give_what_distill_gives(tmp_path, tiny_teacher, small_train):
    options = dict(iterations=5, soft_label_epochs=1, save_plots=False)
    whole = Distiller(tiny_teacher, _args(tmp_path / "a", **options), small_train).distill()
    d = Distiller(tiny_teacher, _args(tmp_path / "b", **options), small_train)
    stats = d.compute_statistics()
    bary = d.compute_barycenters(stats)
    assert sorted(bary.positions) == list(range(10)) and bary.positions[0].shape == (2, 16 * 7 * 7)
    synthetic = d.synthesize(stats, bary)
    assert synthetic.images.dtype == torch.uint8 and tuple(synthetic.images.shape) == (20, 1, 28, 28)
    soft = d.label(synthetic)
    assert tuple(soft.probs.shape) == (20, 10) and soft.views is not None and soft.views.epochs == 1
    staged = d.save(synthetic, soft, stats, bary)
    np.testing.assert_array_equal(_pixels(whole), _pixels(staged))
    assert whole["soft_label"] == staged["soft_label"]
    assert len(load_dataset(str(tmp_path / "b" / "run" / "distilled"), split="train")) == 20


def test_a_subclass_replaces_a_stage(tmp_path, tiny_teacher, small_train):
    """Overriding initial_images changes where synthesis starts: a mid-grey start with a vanishing learning rate
    stays mid-grey."""

    class GreyStart(Distiller):
        def initial_images(self, classes, stats, bary, generator):
            return torch.full((len(classes) * self.args.images_per_class, 1, 28, 28), 0.5)

    args = _args(tmp_path, iterations=1, learning_rate=1e-6, soft_label_epochs=0, save_plots=False)
    distilled = GreyStart(tiny_teacher, args, small_train).distill()
    assert np.abs(_pixels(distilled) - 128 / 255).max() <= 1 / 255


def test_init_auto_starts_from_real_images_for_a_dataset_and_from_noise_for_a_stream(
    tmp_path, tiny_teacher, small_train
):
    kw = dict(iterations=2, soft_label_epochs=0)
    auto = Distiller(tiny_teacher, _args(tmp_path / "a", init="auto", **kw), small_train)
    real = Distiller(tiny_teacher, _args(tmp_path / "r", init="real", **kw), small_train)
    assert auto.init_kind() == "real"
    assert np.array_equal(_pixels(auto.distill()), _pixels(real.distill()))  # the very same start and steps
    stream = Distiller(tiny_teacher, _args(tmp_path / "s", init="auto"), small_train.to_iterable_dataset())
    assert stream.init_kind() == "noise"


def test_metrics_say_how_far_the_images_moved_from_their_start(tmp_path, tiny_teacher, small_train):
    kw = dict(init="real", iterations=3, soft_label_epochs=0)
    still = Distiller(tiny_teacher, _args(tmp_path / "s", learning_rate=1e-6, **kw), small_train)
    still.distill()
    moved = Distiller(tiny_teacher, _args(tmp_path / "m", learning_rate=0.1, **kw), small_train)
    moved.distill()
    assert 0 <= still.metrics["moved_from_start"] < 0.1  # grey levels: Adam moves a pixel by about lr a step
    assert moved.metrics["moved_from_start"] > 5
    part = torch.load(tmp_path / "m" / "run" / "synthetic" / "batch_00000.pt", weights_only=True)
    assert part["moved"].shape == (len(part["labels"]),)


def test_the_pass_keeps_each_classs_input_statistics_and_input_weight_uses_them(tmp_path, tiny_teacher, small_train):
    from wmdd_hf.statistics import ClassStatistics

    args = _args(tmp_path, init="real", iterations=3, soft_label_epochs=0, input_weight=10.0)
    distiller = Distiller(tiny_teacher, args, small_train)
    distiller.distill()
    stats = ClassStatistics.load(tmp_path / "run" / "statistics.pt")
    labels = np.asarray(small_train["label"])
    for k in (0, 3):
        pixels = np.stack([np.asarray(small_train[int(i)]["image"]) for i in np.flatnonzero(labels == k)]) / 255
        np.testing.assert_allclose(stats.inputs.mean[k, 0].item(), pixels.mean(), rtol=1e-6)
        np.testing.assert_allclose(stats.inputs.var[k, 0].item(), pixels.var(), rtol=1e-5)
    assert distiller.metrics["moved_from_start"] > 0
