import os
import pickle

import numpy as np
import pytest
import torch

from wmdd_hf.checkpoint import atomic_save, load, remove_run_files, remove_stale_temporaries


class Planted:
    """Unpickling this runs code (it writes a file): what a malicious resume file would do."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_planted_pickle_is_refused(tmp_path):
    victim = tmp_path / "was_run"
    path = tmp_path / "statistics.pt"
    torch.save({"features": Planted(str(victim))}, path)
    with pytest.raises(pickle.UnpicklingError):
        load(path)
    assert not victim.exists()


def test_checkpoints_round_trip_tensors_numpy_and_plain_values(tmp_path):
    state = {
        3: {
            "positions": np.arange(6, dtype=np.float32).reshape(2, 3),
            "weights": np.array([0.25, 0.75]),
            "costs": [1.5],
        },
        "t": torch.ones(2),
        "scalar": np.float64(2.5),
        "items": (1, "a"),
    }
    atomic_save(state, tmp_path / "b.pt")
    back = load(tmp_path / "b.pt")
    assert isinstance(back[3]["positions"], np.ndarray) and back[3]["positions"].dtype == np.float32
    np.testing.assert_array_equal(back[3]["positions"], state[3]["positions"])
    np.testing.assert_array_equal(back[3]["weights"], state[3]["weights"])
    assert back["scalar"] == 2.5 and back["items"] == (1, "a") and torch.equal(back["t"], torch.ones(2))
    assert not list(tmp_path.glob("*.tmp"))


def test_overwrite_removes_every_run_file_and_nothing_else(tmp_path):
    for name in ("run_config.json", "statistics.pt", "metrics.json", "synthetic_grid.png", "barycenters_pca.png"):
        (tmp_path / name).write_text("old")
    (tmp_path / "synthetic").mkdir()
    (tmp_path / "synthetic" / "batch_00000.pt").write_text("old")
    (tmp_path / "my_notes.txt").write_text("mine")
    (tmp_path / "runs").mkdir()  # e.g. a tracker's folder
    remove_run_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_notes.txt", "runs"]


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = tmp_path / ".statistics.pt.999999999.tmp"
    dead.write_text("half")
    mine = tmp_path / f".metrics.json.{os.getpid()}.tmp"
    mine.write_text("in progress")
    folder = tmp_path / ".distilled.999999998.tmp"
    folder.mkdir()
    (folder / "x").write_text("half")
    other = tmp_path / "notes.tmp"  # not the library's naming
    other.write_text("keep")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted([dead.name, folder.name])
    assert mine.exists() and other.exists() and not dead.exists() and not folder.exists()


def test_an_argument_added_later_matches_an_older_run_only_at_its_default(tmp_path):
    import json

    from wmdd_hf.checkpoint import OutputDirError, check_run_config

    (tmp_path / "run_config.json").write_text(json.dumps({"bn_weight": 0.1}))  # written before "loss_scale" existed
    defaults = {"bn_weight": 0.1, "loss_scale": "sum"}
    assert check_run_config(tmp_path, {"bn_weight": 0.1, "loss_scale": "sum"}, False, defaults)
    with pytest.raises(OutputDirError, match="loss_scale"):
        check_run_config(tmp_path, {"bn_weight": 0.1, "loss_scale": "mean"}, False, defaults)
    with pytest.raises(OutputDirError, match="bn_weight"):
        check_run_config(tmp_path, {"bn_weight": 1.0, "loss_scale": "sum"}, False, defaults)
