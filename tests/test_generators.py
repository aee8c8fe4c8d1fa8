"""Latent-space synthesis with a diffusers AutoencoderKL (tiny random-weight configs) and the autoencoder trainer."""

import numpy as np
import pytest
import torch

from wmdd_hf import DistillationArguments, Distiller
from wmdd_hf.checkpoint import OutputDirError
from wmdd_hf.generators import AutoencoderTrainingConfig, LatentSpace, build_autoencoder, train_autoencoder

TINY = AutoencoderTrainingConfig(block_out_channels=(8, 8), latent_channels=2, norm_num_groups=4)


def _autoencoder(folder, channels=1, seed=0):
    torch.manual_seed(seed)
    ae = build_autoencoder(channels, 28, TINY)
    ae.save_pretrained(folder)
    return str(folder)


def _args(tmp_path, **kw):
    options = dict(
        output_dir=str(tmp_path / "run"),
        images_per_class=2,
        batch_size=10,
        disable_tqdm=True,
        save_plots=False,
        logging_steps=5,
    )
    return DistillationArguments(**{**options, **kw})


def _pixels(dataset) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32)) for im in dataset["image"]])[:, None] / 255


def test_the_latent_start_is_the_autoencoders_round_trip_of_the_init_images(tmp_path, tiny_teacher, small_train):
    """With a vanishing step the latent set is decode(encode(x)) of the very images the pixel run starts from."""
    ae = _autoencoder(tmp_path / "ae")
    still = dict(init="real", iterations=1, learning_rate=1e-9)
    pixel = Distiller(tiny_teacher, _args(tmp_path / "p", **still), small_train).distill()
    latent = Distiller(tiny_teacher, _args(tmp_path / "l", generator=ae, **still), small_train).distill()
    space = LatentSpace.from_pretrained(ae)
    with torch.no_grad():
        expected = space.render(space.start(_pixels(pixel)))
    assert (_pixels(latent) - expected).abs().max() <= 1 / 255 + 1e-6
    assert (_pixels(latent) - _pixels(pixel)).abs().mean() > 0.01  # a random decoder changes the images


def test_latent_synthesis_moves_the_features_towards_the_points(tmp_path, tiny_teacher, small_train):
    d = Distiller(tiny_teacher, _args(tmp_path, generator=_autoencoder(tmp_path / "ae"), iterations=20), small_train)
    d.distill()
    assert d.metrics["feature_loss_end"] < 0.9 * d.metrics["feature_loss_start"], d.metrics


def test_a_generator_that_cannot_make_the_teachers_images_is_refused_before_any_work(
    tmp_path, tiny_teacher, small_train
):
    rgb = _autoencoder(tmp_path / "rgb", channels=3)
    with pytest.raises(ValueError, match="makes 3-channel images but the teacher takes 1"):
        Distiller(tiny_teacher, _args(tmp_path, generator=rgb), small_train)
    assert not (tmp_path / "run").exists()


def test_a_resume_with_another_autoencoder_is_refused(tmp_path, tiny_teacher, small_train):
    first, other = _autoencoder(tmp_path / "a", seed=0), _autoencoder(tmp_path / "b", seed=1)
    Distiller(tiny_teacher, _args(tmp_path, generator=first, iterations=1), small_train).distill()
    moved = tmp_path / "a-moved"
    (tmp_path / "a").rename(moved)  # the same weights under another name resume
    Distiller(tiny_teacher, _args(tmp_path, generator=str(moved), iterations=1), small_train).distill()
    with pytest.raises(OutputDirError, match="generator_fingerprint"):
        Distiller(tiny_teacher, _args(tmp_path, generator=other, iterations=1), small_train).distill()


def test_training_the_autoencoder_lowers_its_reconstruction_error(small_train):
    from wmdd_hf.generators import reconstruction_mse

    images = torch.from_numpy(np.stack([np.asarray(im) for im in small_train.select(range(400))["image"]]))[:, None]
    held_out = images[300:]
    config = AutoencoderTrainingConfig(**{**TINY.__dict__, "steps": 40, "batch_size": 32, "learning_rate": 3e-3})
    torch.manual_seed(config.seed)
    untrained = reconstruction_mse(build_autoencoder(1, 28, config), held_out)
    ae, report = train_autoencoder(images[:300], config, validation=held_out, progress=False)
    assert report["val_mse"] < 0.5 * untrained, (report, untrained)
    assert report["parameters"] == sum(p.numel() for p in ae.parameters())


def test_the_data_basis_maps_pixels_to_standard_units_and_back():
    from wmdd_hf.generators import DataBasisSpace

    grey = DataBasisSpace(torch.tensor([0.3]), torch.tensor([[0.04]]))  # std 0.2
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(grey.start(x), (x - 0.3) / 0.2)
    colour = torch.tensor([[0.05, 0.01, 0.0], [0.01, 0.03, 0.005], [0.0, 0.005, 0.02]])
    space = DataBasisSpace(torch.tensor([0.4, 0.5, 0.3]), colour)
    x = torch.rand(3, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(space.render(space.start(x)), x)
    torch.testing.assert_close(space.basis @ space.basis.T, colour.double())  # the data's covariance, unit z


def test_synthesis_in_the_data_basis_keeps_grey_data_grey_and_still_moves_it():
    from test_synthesis import _grey_rgb_setup

    from wmdd_hf.generators import DataBasisSpace, PixelSpace
    from wmdd_hf.scores import colour_spread
    from wmdd_hf.synthesis import NormTargets, SynthesisConfig, synthesize_batch

    teacher, stats, labels, points = _grey_rgb_setup()
    targets = NormTargets.from_moments(stats.norms, "per_class")
    start = torch.rand(len(labels), 1, 16, 16, generator=torch.Generator().manual_seed(1)).expand(-1, 3, -1, -1)
    basis = DataBasisSpace.from_moments(stats.inputs, 3)

    def run(space):
        config = SynthesisConfig(iterations=30, learning_rate=0.05)
        images, _ = synthesize_batch(
            teacher,
            start.clone(),
            labels,
            points,
            torch.ones(len(labels)),
            targets,
            config,
            torch.Generator().manual_seed(0),
            space=space,
        )
        return colour_spread((images * 255).round().to(torch.uint8)), (images - start).abs().mean() * 255

    (pixel_spread, _), (basis_spread, basis_moved) = run(PixelSpace()), run(basis)
    assert pixel_spread > 20  # per-channel steps drift apart
    assert basis_spread < 1 and basis_moved > 3  # the grey axis moved, the colour axes did not
    noise = basis.noise((4, 3, 16, 16), torch.Generator().manual_seed(0))
    assert colour_spread((noise * 255).round().to(torch.uint8)) < 1 and noise.std() > 0.1


def test_the_data_basis_runs_in_the_distiller_and_refuses_a_generator(tmp_path, tiny_teacher, small_train):
    args = DistillationArguments(
        output_dir=str(tmp_path / "run"),
        images_per_class=2,
        iterations=3,
        batch_size=10,
        disable_tqdm=True,
        soft_label_epochs=0,
        research_options={"pixel_basis": "data"},
    )
    distiller = Distiller(tiny_teacher, args, small_train)
    distiller.distill()
    assert distiller.metrics["moved_from_start"] > 0
    with pytest.raises(ValueError, match="pixel_basis='data' re-parameterises the pixels"):
        DistillationArguments(output_dir=str(tmp_path / "g"), generator="g", research_options={"pixel_basis": "data"})
    with pytest.raises(ValueError, match="pixel_basis='rgb' is not one of"):
        DistillationArguments(output_dir=str(tmp_path / "g"), research_options={"pixel_basis": "rgb"})
