"""Distil an image-classification dataset with WMDD.

    python examples/distill.py                                   # Fashion-MNIST, IPC 10, the project's teacher
    accelerate launch examples/distill.py --images_per_class 50
    accelerate launch examples/distill.py --config configs/fashion_mnist_ipc10.yaml
    python examples/distill.py --push_to_hub --hub_dataset_id user/fashion-mnist-wmdd-ipc10

Two CPU processes (gloo): ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \
    --mixed_precision no --dynamo_backend no examples/distill.py
"""

import sys
from dataclasses import dataclass, field

from wmdd_hf import DistillationArguments, Distiller, console, load_image_dataset
from wmdd_hf.cli import DEFAULT_TEACHER, parse_args, resolve_teacher


@dataclass
class ScriptArguments:
    teacher: str = field(
        default=DEFAULT_TEACHER, metadata={"help": "Teacher: a saved folder, timm name or transformers id."}
    )
    dataset: str = field(
        default="fashion_mnist", metadata={"help": "'fashion_mnist', a Hub dataset id or a local folder."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    train_split: str = field(default="train", metadata={"help": "Split to distil."})
    eval_split: str | None = field(
        default="test", metadata={"help": "Real split for --evaluate (read only then; 'None': no evaluation)."}
    )
    streaming: bool = field(default=False, metadata={"help": "Stream the training split (large Hub datasets)."})
    evaluate: bool = field(default=False, metadata={"help": "Train students on the distilled set and report accuracy."})


def load_splits(script: ScriptArguments):
    """``(train, eval or None)``: the evaluation split is read only with ``--evaluate``, so a dataset with a
    training split alone distils; with ``--evaluate`` a missing split is an error that lists the splits there."""
    kwargs = {"name": script.dataset_config} if script.dataset_config else {}
    train = load_image_dataset(script.dataset, script.train_split, streaming=script.streaming, **kwargs)
    eval_split = None if script.eval_split in (None, "", "None", "none") else script.eval_split
    if script.evaluate and eval_split is None:
        raise ValueError("--evaluate needs --eval_split (the real split the students are tested on).")
    test = load_image_dataset(script.dataset, eval_split, **kwargs) if script.evaluate else None
    return train, test


def main() -> None:
    from accelerate import PartialState

    script, args = parse_args((ScriptArguments, DistillationArguments))
    console.log_stages()
    with PartialState().main_process_first():  # one process builds or downloads the data; the others read its cache
        train, test = load_splits(script)
    teacher = resolve_teacher(script.teacher)
    distiller = Distiller(teacher, args, train, test, dataset_name=script.dataset)
    try:
        distiller.distill()
    except KeyboardInterrupt:
        sys.exit(console.interrupted(args.output_dir))
    if distiller.accelerator.is_main_process:
        print(console.summary(distiller, teacher=script.teacher, dataset=script.dataset))
        if script.evaluate:
            print(distiller.evaluate())


if __name__ == "__main__":
    sys.exit(console.run(main))
