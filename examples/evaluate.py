"""Train students on a distilled set and report accuracy on the real test split.

python examples/evaluate.py --distilled outputs/wmdd-fashion-mnist-ipc10/distilled
python examples/evaluate.py --distilled user/fashion-mnist-wmdd-ipc10 --protocol hard --seeds 0 1 2
"""

import json
import sys
from dataclasses import dataclass, field

from wmdd_hf import console, load_image_dataset
from wmdd_hf.cli import DEFAULT_TEACHER, parse_args, resolve_teacher
from wmdd_hf.evaluation import EvaluationConfig, evaluate_distilled
from wmdd_hf.hub import bundled_teacher


@dataclass
class EvaluateArguments:
    distilled: str = field(metadata={"help": "Distilled set: a local folder or a Hub dataset id."})
    teacher: str | None = field(
        default=None,
        metadata={
            "help": "Teacher for the soft protocol (default: the one the set carries in teacher/, else the "
            "project's Fashion-MNIST teacher)."
        },
    )
    dataset: str = field(default="fashion_mnist", metadata={"help": "Dataset whose eval split is the test set."})
    eval_split: str = field(default="test", metadata={"help": "Real evaluation split."})
    protocol: str = field(default="soft", metadata={"help": "'soft' (KD from the teacher) or 'hard' (labels only)."})
    student: str = field(default="wmdd_convnet", metadata={"help": "Student architecture (timm name or folder)."})
    steps: int | None = field(
        default=None, metadata={"help": "Student optimiser steps (default: the validated budget for the set's IPC)."}
    )
    weighted_kd: bool = field(
        default=True,
        metadata={"help": "Weight each image's KD loss by its barycenter weight (the paper's relabelling)."},
    )
    device: str | None = field(default=None, metadata={"help": "Device of teacher, student and batches."})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Student seeds."})
    use_stored_soft_labels: bool = field(
        default=False, metadata={"help": "Train on the stored augmented-view labels, no teacher."}
    )
    plot: str | None = field(default=None, metadata={"help": "Save the accuracy curves to this PNG."})


def main() -> None:
    (args,) = parse_args((EvaluateArguments,))
    test = load_image_dataset(args.dataset, args.eval_split)
    config = EvaluationConfig(
        protocol=args.protocol,
        student=args.student,
        steps=args.steps,
        weighted_kd=args.weighted_kd,
        student_kwargs={"width": 64} if args.student == "wmdd_convnet" else {},
    )
    teacher = args.teacher
    if teacher is None and args.protocol == "soft" and not args.use_stored_soft_labels:
        teacher = bundled_teacher(args.distilled) or DEFAULT_TEACHER
    teacher = None if args.use_stored_soft_labels or teacher is None else resolve_teacher(teacher)
    result = evaluate_distilled(
        args.distilled,
        test,
        teacher=teacher,
        config=config,
        seeds=tuple(args.seeds),
        use_stored_soft_labels=args.use_stored_soft_labels,
        plot_path=args.plot,
        device=args.device,
    )
    print(json.dumps({k: v for k, v in result.items() if k != "curves"}, indent=2))


if __name__ == "__main__":
    sys.exit(console.run(main))
