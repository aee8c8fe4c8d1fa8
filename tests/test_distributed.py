"""Real processes: two gloo processes on CPU against one, and a run killed with SIGKILL then resumed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    "29581",
]


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
    two = _run([*TWO_CPU_PROCESSES, SCRIPT, str(tiny_teacher_dir), str(dataset_dir), str(tmp_path / "two"), "6"])
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
    from datasets import load_dataset

    a = load_dataset(str(tmp_path / "one" / "distilled"), split="train")
    b = load_dataset(str(tmp_path / "two" / "distilled"), split="train")
    assert a["label"] == b["label"]


def test_killed_run_resumes_without_recomputing(tiny_teacher_dir, dataset_dir, tmp_path):
    reference = tmp_path / "reference"
    _run([sys.executable, SCRIPT, str(tiny_teacher_dir), str(dataset_dir), str(reference), "40"])
    killed = tmp_path / "killed"
    cmd = [sys.executable, SCRIPT, str(tiny_teacher_dir), str(dataset_dir), str(killed), "40"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len([e for e in read_events(killed) if e["stage"] == "synthesis"]) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = {e["batch"] for e in read_events(killed) if e["stage"] == "synthesis"}
    assert 2 <= len(finished_before) < 5, finished_before
    out = _run(cmd)
    assert f"synthesized {5 - len(finished_before)}" in out
    per_batch = [e["batch"] for e in read_events(killed) if e["stage"] == "synthesis"]
    assert sorted(per_batch) == [0, 1, 2, 3, 4]  # every class batch synthesized exactly once
    assert len([e for e in read_events(killed) if e["stage"] == "statistics"]) == 1
    images_ref, labels_ref = _outputs(reference)
    images, labels = _outputs(killed)
    assert torch.equal(labels, labels_ref)
    torch.testing.assert_close(images, images_ref, atol=1e-5, rtol=0)
