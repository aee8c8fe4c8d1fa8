"""The example scripts' shared parsing helpers: the default teacher from any working directory."""

from pathlib import Path

import pytest

from wmdd_hf.cli import DEFAULT_TEACHER, PROJECT_ROOT, resolve_teacher


def test_the_default_teacher_resolves_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    resolved = Path(resolve_teacher(DEFAULT_TEACHER))
    assert resolved == PROJECT_ROOT / DEFAULT_TEACHER and (resolved / "config.json").exists()
    assert resolve_teacher("org/some-model") == "org/some-model"  # other names go to the loaders as given


def test_without_the_projects_checkpoint_the_error_says_how_to_pass_a_teacher(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"pass --teacher: a folder saved by examples/train_teacher.py"):
        resolve_teacher(DEFAULT_TEACHER, root=tmp_path / "elsewhere")
