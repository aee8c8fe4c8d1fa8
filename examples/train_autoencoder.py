"""Train the small diffusers AutoencoderKL whose latents synthesis can optimise (``--generator``).

python examples/train_autoencoder.py                                     # Fashion-MNIST, grey 28 px
python examples/train_autoencoder.py --dataset fashion_mnist_rgb32 --output_dir checkpoints/fashion-mnist-rgb32-autoencoder
accelerate launch examples/distill.py --generator checkpoints/fashion-mnist-autoencoder --recipe real_start

It trains on the training split without the benchmarks' held-out validation part (the same seeded 5,000 images:
wmdd_hf.data.train_validation_split) and writes the reconstruction error on that part into its wmdd_hf.json.
"""

import dataclasses
import time
from dataclasses import dataclass, field

from wmdd_hf import load_image_dataset
from wmdd_hf.cli import parse_args
from wmdd_hf.data import ImageSpec, decode_all, detect_columns, image_channels, train_validation_split
from wmdd_hf.generators import AutoencoderTrainingConfig, save_autoencoder, train_autoencoder


@dataclass
class Arguments:
    dataset: str = field(default="fashion_mnist", metadata={"help": "'fashion_mnist', a Hub id or a local folder."})
    output_dir: str = field(default="checkpoints/fashion-mnist-autoencoder", metadata={"help": "Where it is saved."})
    steps: int = field(default=600, metadata={"help": "Training steps (batches)."})
    batch_size: int = field(default=64, metadata={"help": "Images per step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate (cosine decay)."})
    latent_channels: int = field(default=4, metadata={"help": "Channels of the latent (half the side per block)."})
    seed: int = field(default=0, metadata={"help": "Seed of the batches and the initial weights."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bar."})


def main() -> None:
    (args,) = parse_args((Arguments,))
    train, validation = train_validation_split(load_image_dataset(args.dataset, "train"))
    image_column, label_column = detect_columns(train.features)
    first = train[0][image_column]
    spec = ImageSpec(image_channels(first), (first.height, first.width))
    images, _ = decode_all(train, spec, image_column, label_column, progress=not args.disable_tqdm)
    held_out, _ = decode_all(validation, spec, image_column, label_column, progress=False)
    config = AutoencoderTrainingConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        latent_channels=args.latent_channels,
        seed=args.seed,
    )
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ae, report = train_autoencoder(images, config, validation=held_out, progress=not args.disable_tqdm)
    metadata = {
        "dataset": args.dataset,
        "image_spec": {"channels": spec.channels, "size": list(spec.size)},
        "training": dataclasses.asdict(config),
        "trained_at": start,
        "command": "python examples/train_autoencoder.py "
        + " ".join(f"--{k} {v}" for k, v in dataclasses.asdict(args).items() if k != "disable_tqdm"),
        **report,
    }
    save_autoencoder(ae, args.output_dir, metadata)
    print(f"validation MSE {report['val_mse']:.2e} in {report['seconds']:.0f} s -> {args.output_dir}")


if __name__ == "__main__":
    main()
