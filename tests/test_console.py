"""What a person sees: the closing summary, the resume and stage lines, and Ctrl-C."""

import importlib.util
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from wmdd_hf import console
from wmdd_hf.arguments import DistillationArguments
from wmdd_hf.distiller import Distiller

ROOT = Path(__file__).resolve().parent.parent


def _finished(tmp_path, **metrics):
    (tmp_path / "synthetic_grid.png").write_bytes(b"png")
    base = {"num_images": 20, "teacher_agreement": 0.95, "statistics_s": 1.25, "synthesis_s": 30.0}
    return SimpleNamespace(metrics={**base, **metrics}, args=SimpleNamespace(output_dir=str(tmp_path)))


def test_the_summary_says_where_the_set_is_what_to_look_at_and_what_to_run_next(tmp_path):
    text = console.summary(_finished(tmp_path), teacher="my/teacher", dataset="my/data")
    assert f"Distilled 20 images -> {tmp_path / 'distilled'}" in text
    assert str(tmp_path / "synthetic_grid.png") in text and "barycenters_pca.png" not in text  # only what exists
    assert "Stage times: statistics 1.2 s, synthesis 30.0 s" in text
    assert "95.0% of the images are read by the teacher as their own class" in text and "low" not in text
    evaluate = (
        f"python examples/evaluate.py --distilled {tmp_path / 'distilled'} --teacher my/teacher --dataset my/data"
    )
    assert evaluate in text
    assert "--push_to_hub --hub_dataset_id" in text and "docs/metrics.md" in text
    assert "{" not in text  # no raw dict
    low = console.summary(_finished(tmp_path, teacher_agreement=0.5))
    assert "50.0% of the images" in low and "(low:" in low
    resumed = console.summary(
        _finished(tmp_path, resumed={"statistics": True, "barycenter": True, "synthesis_batches": 1})
    )
    assert "Resumed from disk: statistics, barycenter, 1 synthesis batches" in resumed
    assert "Resumed" not in console.summary(_finished(tmp_path, resumed={"statistics": False, "synthesis_batches": 0}))


def test_ctrl_c_ends_with_one_line_on_how_to_resume_and_exit_code_130(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("distill_example", ROOT / "examples" / "distill.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    class Interrupted:
        def __init__(self, *args, **kwargs):
            pass

        def distill(self):
            raise KeyboardInterrupt

    monkeypatch.setattr(example, "load_splits", lambda script: (None, None))
    monkeypatch.setattr(example, "Distiller", Interrupted)
    monkeypatch.setattr(sys, "argv", ["distill.py", "--output_dir", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as stop:
        example.main()
    assert stop.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"Interrupted. Finished stages and class batches are kept in {tmp_path / 'run'}: run the same "
        "command again to resume from there."
    ]


def test_a_resume_says_what_it_found_and_every_stage_logs_its_start_and_end(
    tmp_path, tiny_teacher, small_train, caplog
):
    kw = dict(output_dir=str(tmp_path / "run"), images_per_class=2, iterations=3, batch_size=10, disable_tqdm=True)
    args = DistillationArguments(**kw, soft_label_epochs=0)
    with caplog.at_level(logging.INFO, logger="wmdd_hf"):
        Distiller(tiny_teacher, args, small_train).distill()
    first = [r.getMessage() for r in caplog.records]
    assert "statistics: started" in first and any(m.startswith("save: done in") for m in first)
    assert not any("Resum" in m for m in first)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="wmdd_hf"):
        Distiller(tiny_teacher, args, small_train).distill()
    again = [r.getMessage() for r in caplog.records]
    assert any("statistics found and barycenter found" in m for m in again)
    assert any("2 of 2 class batches were already done" in m for m in again)


def test_the_barycenter_picture_shows_the_real_points_not_just_the_barycenter(tmp_path):
    import numpy as np
    import torch
    from PIL import Image

    from wmdd_hf.visualization import save_barycenter_pca

    rng = np.random.default_rng(0)
    features = {k: torch.tensor(rng.normal(size=(400, 8)), dtype=torch.float32) for k in range(2)}
    positions = {k: rng.normal(size=(2, 8)) for k in range(2)}
    weights = {k: np.array([0.5, 0.5]) for k in range(2)}
    path = tmp_path / "pca.png"
    save_barycenter_pca(features, positions, weights, ["a", "b"], path)
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    coloured = (pixels[..., 2] - pixels[..., 0] > 40).mean()  # blue-ish: the real points
    assert coloured > 0.01, f"the real points cover {coloured:.2%} of the picture"


def test_an_input_error_prints_once_without_a_traceback_and_only_on_the_first_process(monkeypatch, capsys):
    from wmdd_hf.data import DatasetValidationError

    def bad_input():
        raise DatasetValidationError("Column 'img' is not in the dataset.")

    monkeypatch.delenv("WMDD_HF_TRACEBACK", raising=False)
    monkeypatch.setenv("RANK", "0")
    assert console.run(bad_input) == 1
    assert capsys.readouterr().err == "error: Column 'img' is not in the dataset.\n"
    monkeypatch.setenv("RANK", "1")  # another process of `accelerate launch`: silent, same exit code
    assert console.run(bad_input) == 1
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("WMDD_HF_TRACEBACK", "1")
    with pytest.raises(DatasetValidationError):
        console.run(bad_input)

    def bug():
        raise KeyError("a bug keeps its traceback")

    monkeypatch.delenv("WMDD_HF_TRACEBACK")
    with pytest.raises(KeyError):
        console.run(bug)
    assert console.run(lambda: None) == 0
