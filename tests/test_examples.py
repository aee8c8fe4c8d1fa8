"""The example scripts are thin wrappers: their CLI, YAML configs and a full run that pushes to the Hub double."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wmdd_hf import DistillationArguments
from wmdd_hf.cli import parse_args
from wmdd_hf.teacher import TeacherTrainingArguments

ROOT = Path(__file__).resolve().parent.parent


def _run(args, timeout=600, **env):
    out = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


@pytest.mark.parametrize(
    "script, flag",
    [
        ("examples/train_teacher.py", "--epochs"),
        ("examples/distill.py", "--images_per_class"),
        ("examples/evaluate.py", "--protocol"),
        ("examples/train_autoencoder.py", "--latent_channels"),
    ],
)
def test_help(script, flag):
    assert flag in _run([script, "--help"])


def test_yaml_config_and_flags(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("images_per_class: 50\nbn_weight: 0.5\noutput_dir: from-yaml\nreport_to: tensorboard\n")
    (args,) = parse_args((DistillationArguments,), ["--config", str(config), "--bn_weight", "2.0"])
    assert args.images_per_class == 50 and args.bn_weight == 2.0 and args.output_dir == "from-yaml"
    assert args.trackers == ["tensorboard"]
    with pytest.raises(SystemExit):  # a Literal option: the CLI refuses the value and lists the choices
        parse_args((DistillationArguments,), ["--init", "zeros"])
    with pytest.raises(ValueError, match="feature_loss='kl'"):  # a research option is checked by the same owner
        DistillationArguments(research_options={"feature_loss": "kl"})
    config.write_text("bn_weight: 0.5\nresearch_options:\n  loss_scale: sum\n  roll: 0.25\n")  # a nested group
    (args,) = parse_args((DistillationArguments,), ["--config", str(config)])
    assert (args.research.loss_scale, args.research.roll, args.bn_weight) == ("sum", 0.25, 0.5)
    (teacher,) = parse_args((TeacherTrainingArguments,), ["--epochs", "3"])
    assert teacher.epochs == 3 and teacher.model == "wmdd_convnet"


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_parse_with_the_distill_scripts_arguments(config):
    """``make demo`` runs examples/distill.py with configs/fashion_mnist_ipc10.yaml: every key must be a known flag."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("distill_example", ROOT / "examples" / "distill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    script, args = parse_args((module.ScriptArguments, DistillationArguments), ["--config", str(config)])
    ipc = int(config.stem.rsplit("ipc", 1)[1])
    assert args.images_per_class == ipc and script.dataset == "fashion_mnist"


def test_distill_script_runs_logs_and_pushes(hub, tiny_teacher_dir, small_train, tmp_path):
    data = tmp_path / "data"
    small_train.select(range(0, 3000, 10)).save_to_disk(str(data))
    out = tmp_path / "out"
    stdout = _run(
        [
            "examples/distill.py",
            "--teacher",
            str(tiny_teacher_dir),
            "--dataset",
            str(data),
            "--eval_split",
            "",
            "--output_dir",
            str(out),
            "--images_per_class",
            "1",
            "--iterations",
            "10",
            "--report_to",
            "tensorboard",
            "--push_to_hub",
            "--hub_dataset_id",
            "tester/from-cli",
            "--hub_token",
            "hf_test_token",
            "--disable_tqdm",
        ]
    )
    assert f"Distilled 10 images -> {out / 'distilled'}" in stdout  # the closing summary, not a raw dict
    assert "Teacher agreement:" in stdout and "python examples/evaluate.py --distilled" in stdout
    assert any(p.endswith(".parquet") for p in hub.repos["tester/from-cli"].files)
    events = list(out.rglob("events.out.tfevents.*"))
    assert events, "tensorboard logs were not written"


def test_a_dataset_with_a_training_split_alone_distils_and_evaluate_names_the_missing_split(tmp_path):
    import importlib.util

    import numpy as np
    from PIL import Image

    from wmdd_hf.data import DatasetValidationError

    for k in range(2):
        folder = tmp_path / "data" / "train" / f"class{k}"
        folder.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i + 100 * k, dtype=np.uint8)).save(folder / f"{i}.png")
    spec = importlib.util.spec_from_file_location("distill_example", ROOT / "examples" / "distill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for split in ("test", "None"):
        train, test = module.load_splits(module.ScriptArguments(dataset=str(tmp_path / "data"), eval_split=split))
        assert len(train) == 6 and test is None
    with pytest.raises(DatasetValidationError, match=r"Split 'test' is not in .*splits: \['train'\]"):
        module.load_splits(module.ScriptArguments(dataset=str(tmp_path / "data"), evaluate=True))
    with pytest.raises(ValueError, match="--evaluate needs --eval_split"):
        module.load_splits(module.ScriptArguments(dataset=str(tmp_path / "data"), evaluate=True, eval_split="None"))


def test_under_accelerate_launch_an_input_error_prints_once_without_tracebacks(tmp_path):
    launcher = ["-m", "accelerate.commands.launch", "--quiet", "--num_processes", "1", "--num_machines", "1"]
    launcher += ["--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "examples" / "distill.py")]
    out = subprocess.run(
        [sys.executable, *launcher, "--dataset", str(tmp_path / "no_such_folder"), "--output_dir", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert text.count(f"There is no local folder '{tmp_path / 'no_such_folder'}'") == 1, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert not (tmp_path / "o").exists()  # stopped before anything was written
