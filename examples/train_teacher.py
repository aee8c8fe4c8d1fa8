"""Train a teacher for distillation.

python examples/train_teacher.py                       # Fashion-MNIST ConvNet teacher
accelerate launch examples/train_teacher.py --model resnet18 --epochs 5
accelerate launch examples/train_teacher.py --model resnet18_small --dataset fashion_mnist_rgb32 \
    --output_dir checkpoints/fashion-mnist-rgb32-resnet18      # the second teacher family (3x3 stem, 32 px RGB)
python examples/train_teacher.py --config teacher.yaml
"""

from wmdd_hf.cli import parse_args
from wmdd_hf.teacher import TeacherTrainingArguments, train_teacher


def main() -> None:
    (args,) = parse_args((TeacherTrainingArguments,))
    result = train_teacher(args)
    print(f"test accuracy {result['test_acc']:.4f} in {result['wall_s']:.0f} s -> {args.output_dir}")


if __name__ == "__main__":
    main()
