"""Real processes: two gloo processes on CPU against one, and a run killed with SIGKILL then resumed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from wmdd_hf.checkpoint import load, read_events

SCRIPT = str(Path(__file__).parent / "scripts" / "run_distill.py")
TWO_CPU_PROCESSES = [
    "accelerate",
    "launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
    "--main_process_port",
]


def _free_port() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


@pytest.fixture(scope="module")
def dataset_dir(small_train, tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "subset"
    small_train.select(range(0, 3000, 3)).save_to_disk(str(folder))  # 100 per class
    return folder


def _env():
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


def _run(cmd, timeout=600):
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


def _outputs(folder: Path):
    batches = sorted((folder / "synthetic").glob("batch_*.pt"))
    parts = [load(b) for b in batches]
    return torch.cat([p["images"] for p in parts]), torch.cat([p["labels"] for p in parts])


def test_two_processes_give_the_one_process_result(tiny_teacher_dir, dataset_dir, tmp_path):
    one = _run([sys.executable, SCRIPT, str(tiny_teacher_dir), str(dataset_dir), str(tmp_path / "one"), "6"])
    assert "processes 1" in one
    two = _run(
        [*TWO_CPU_PROCESSES, _free_port(), SCRIPT, str(tiny_teacher_dir), str(dataset_dir), str(tmp_path / "two"), "6"]
    )
    assert "processes 2" in two
    events = read_events(tmp_path / "two")
    assert {e["process"] for e in events if e["stage"] == "synthesis"} == {0, 1}  # both processes did work
    images_1, labels_1 = _outputs(tmp_path / "one")
    images_2, labels_2 = _outputs(tmp_path / "two")
    assert torch.equal(labels_1, labels_2)
    torch.testing.assert_close(images_2, images_1, atol=1e-4, rtol=0)
    stats_1, stats_2 = load(tmp_path / "one" / "statistics.pt"), load(tmp_path / "two" / "statistics.pt")
    for name, (_count, mean, m2) in stats_1["norms"].items():
        torch.testing.assert_close(stats_2["norms"][name][1], mean, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(stats_2["norms"][name][2], m2, rtol=1e-9, atol=1e-9)
    # each process received and wrote only the features of the classes it owns: about half each
    written = {e["process"]: e for e in events if e["stage"] == "statistics_features"}
    assert written[0]["classes"] == [0, 1, 2, 3, 4] and written[1]["classes"] == [5, 6, 7, 8, 9]
    from datasets import load_from_disk

    labels = load_from_disk(str(dataset_dir))["label"]
    assert written[0]["rows"] == sum(k < 5 for k in labels) and written[1]["rows"] == sum(k >= 5 for k in labels)
    from wmdd_hf.statistics import ClassStatistics

    kept_1 = ClassStatistics.load(tmp_path / "one" / "statistics.pt")
    kept_2 = ClassStatistics.load(tmp_path / "two" / "statistics.pt")
    for k in range(10):
        assert torch.equal(kept_2.rows[k], kept_1.rows[k])
        torch.testing.assert_close(kept_2.features[k], kept_1.features[k], rtol=1e-5, atol=1e-5)
    from datasets import load_dataset

    a = load_dataset(str(tmp_path / "one" / "distilled"), split="train")
    b = load_dataset(str(tmp_path / "two" / "distilled"), split="train")
    # the published sets agree row by row: pixels (PNG), labels and barycenter weights
    assert [np.asarray(im).tobytes() for im in a["image"]] == [np.asarray(im).tobytes() for im in b["image"]]
    assert a["label"] == b["label"] == [k for k in range(10) for _ in range(2)]
    np.testing.assert_allclose(a["barycenter_weight"], b["barycenter_weight"], atol=1e-6)


def _batch_files(folder: Path) -> set[int]:
    return {int(p.stem.split("_")[1]) for p in (folder / "synthetic").glob("batch_*.pt")}


@pytest.fixture(scope="module")
def reference_run(tiny_teacher_dir, dataset_dir, tmp_path_factory):
    reference = tmp_path_factory.mktemp("reference") / "run"
    _run([sys.executable, SCRIPT, str(tiny_teacher_dir), str(dataset_dir), str(reference), "40"])
    return reference


def test_killed_during_synthesis_resumes_without_recomputing(tiny_teacher_dir, dataset_dir, reference_run, tmp_path):
    killed = tmp_path / "killed"
    cmd = [sys.executable, SCRIPT, str(tiny_teacher_dir), str(dataset_dir), str(killed), "40"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(_batch_files(killed)) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = _batch_files(killed)  # the files are the truth; an event may lag its file by a kill
    assert 2 <= len(finished_before) < 5, finished_before
    out = _run(cmd)
    assert f"synthesized {5 - len(finished_before)}" in out
    rerun = [e["batch"] for e in read_events(killed) if e["stage"] == "synthesis" and e["pid"] != proc.pid]
    assert sorted(rerun) == sorted(set(range(5)) - finished_before)  # only the missing batches, once each
    _assert_same_result(killed, reference_run)


@pytest.mark.parametrize("stage", ["statistics", "barycenters", "save"])
def test_killed_in_any_stage_ends_with_the_uninterrupted_result(
    stage, tiny_teacher_dir, dataset_dir, reference_run, tmp_path
):
    killed = tmp_path / "killed"
    cmd = [sys.executable, SCRIPT, str(tiny_teacher_dir), str(dataset_dir), str(killed), "40"]
    proc = subprocess.Popen(
        cmd, env={**_env(), "WMDD_TEST_HANG_IN": stage}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (killed / ".hanging").exists() and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (killed / ".hanging").unlink()
    expected_missing = {"statistics": "statistics.pt", "barycenters": "barycenters.pt", "save": "distilled"}[stage]
    assert not (killed / expected_missing).exists()  # killed mid-stage: its result was never published
    _run(cmd)
    _assert_same_result(killed, reference_run)
    assert not [p for p in killed.rglob("*.tmp")], "temporaries of the killed run were left behind"


def _assert_same_result(folder: Path, reference: Path) -> None:
    images_ref, labels_ref = _outputs(reference)
    images, labels = _outputs(folder)
    assert torch.equal(labels, labels_ref)
    torch.testing.assert_close(images, images_ref, atol=1e-5, rtol=0)
    from datasets import load_dataset

    a = load_dataset(str(folder / "distilled"), split="train")
    b = load_dataset(str(reference / "distilled"), split="train")
    assert [np.asarray(im).tobytes() for im in a["image"]] == [np.asarray(im).tobytes() for im in b["image"]]


def test_train_student_under_two_processes_trains_once_and_prints_once(tiny_teacher, small_train, tmp_path):
    """examples/train_student.py under `accelerate launch` with two gloo processes: the transformers Trainer shares the
    steps, the timm loop runs on the main process only, and each prints one summary, not one per process."""
    import json

    from wmdd_hf import DistillationArguments, Distiller

    args = DistillationArguments(
        output_dir=str(tmp_path / "run"), images_per_class=1, iterations=2, soft_label_epochs=2, disable_tqdm=True
    )
    Distiller(tiny_teacher, args, small_train).distill()
    script = str(Path(__file__).parent.parent / "examples" / "train_student.py")
    test_dir = tmp_path / "test"
    small_train.select(range(0, 3000, 30)).save_to_disk(str(test_dir))  # 100 real images stand in for a test split
    for model in ("resnet-tiny", "timm:wmdd_convnet"):
        out = _run(
            [*TWO_CPU_PROCESSES, _free_port(), script, "--distilled", str(tmp_path / "run" / "distilled")]
            + ["--labels", "views", "--model", model, "--epochs", "2", "--batch_size", "4"]
            + ["--dataset", str(test_dir), "--eval_split", "train"]
        )
        summaries = [json.loads(line) for line in out.splitlines() if line.startswith('{"distilled"')]
        assert len(summaries) == 1 and 0.0 <= summaries[0]["acc_mean"] <= 1.0, out[-2000:]
