"""The distilled set in Hub layout: save, push, load back.

A distilled folder (and the Hub repo it is pushed to) holds::

    README.md                          dataset card: YAML (configs, license, tags, ...) + body from model_cards/
    data/train-00000-of-00001-<sha>.parquet         default config: image (PNG bytes), label, soft_label,
                                                   barycenter_weight
    soft_labels/train-00000-of-00001-<sha>.parquet  config "soft_labels" (when stored): epoch, image_index, view,
                                                   soft_label
    synthetic_grid.png                 the picture shown in the card
    wmdd_hf.json                       arguments, teacher, evaluation (machine-readable)
    teacher/                           the teacher, when it was a local folder or an in-memory model (weights the
                                       user owns): config + safetensors, loaded by ``evaluate_distilled``; a
                                       teacher given by Hub or timm id is named in ``wmdd_hf.json`` instead

``<sha>`` is a digest of the file's bytes and the card's ``configs`` name the exact files: ``datasets`` keys its
cache of a local folder on the card's configs, so a re-distilled folder with the same glob patterns would be served
stale from the cache; content-named files make every new set a new cache entry. All this so that
``datasets.load_dataset(repo_or_folder)`` and ``load_dataset(repo_or_folder, "soft_labels")`` read it
without wmdd_hf installed. Pushing uploads the whole folder in ONE commit that also deletes remote data files not in
it, so no stale shard survives a re-push and the card's ``configs`` are never overwritten by a later step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from datasets import Dataset

from .checkpoint import atomic_path

CARD_TEMPLATE = "distilled_dataset_card.md"
TEACHER_FOLDER = "teacher"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


class HubError(ValueError):
    """A push cannot start (bad repo id, no token); nothing was uploaded."""


class HubNetworkError(HubError, ConnectionError):
    """The Hub could not be reached (a network failure, not a token problem); nothing was uploaded."""


def _template_text() -> str:
    """The card template: the source tree's own beside this module when there is one (a checkout or worktree reads
    its own, not another checkout's through an editable install), else the copy inside the installed wheel."""
    beside = Path(__file__).resolve().parent.parent / "model_cards" / CARD_TEMPLATE
    if beside.is_file():
        return beside.read_text()
    return resources.files("wmdd_hf.model_cards").joinpath(CARD_TEMPLATE).read_text()


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def _write_parquet(dataset: Dataset, folder: Path) -> str:
    """Writes ``folder/train-00000-of-00001-<sha>.parquet``; returns its path relative to the distilled folder."""
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "train.parquet.tmp"
    dataset.to_parquet(str(tmp))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:12]
    final = folder / f"train-00000-of-00001-{digest}.parquet"
    tmp.rename(final)
    return f"{folder.name}/{final.name}"


def changed_arguments(arguments: dict) -> dict:
    """The arguments that shape the set and differ from DistillationArguments' defaults (the card's table)."""
    from .arguments import NON_RESULT_FIELDS, DistillationArguments

    defaults = DistillationArguments().to_dict()  # flat: the research options are keys of their own
    return {
        k: v
        for k, v in arguments.items()
        if k in defaults and k not in NON_RESULT_FIELDS and v != defaults[k] and not isinstance(v, (dict, list))
    }


def render_card(metadata: dict, repo_id: str, grid_image: str | None) -> str:
    """The dataset card (YAML header + Markdown body) from ``model_cards/distilled_dataset_card.md``."""
    from huggingface_hub import DatasetCard, DatasetCardData

    args = metadata.get("arguments", {})
    soft_epochs = int(args.get("soft_label_epochs", 0) or 0)
    files = metadata.get("data_files", {"default": "data/train-*", "soft_labels": "soft_labels/train-*"})
    configs = [
        {"config_name": "default", "data_files": [{"split": "train", "path": files["default"]}], "default": True}
    ]
    if soft_epochs:
        configs.append({"config_name": "soft_labels", "data_files": [{"split": "train", "path": files["soft_labels"]}]})
    source = metadata.get("source_dataset", "unknown")
    card_data = DatasetCardData(
        license=metadata.get("license", "other"),
        task_categories=["image-classification"],
        tags=["dataset-distillation", "wmdd", "synthetic", "wasserstein"],
        size_categories=[_size_category(metadata.get("num_images", 0))],
        source_datasets=[source] if metadata.get("source_url") else None,
        pretty_name=metadata.get("pretty_name", f"WMDD-distilled {source}"),
        configs=configs,
    )
    teacher = metadata.get("teacher", {})
    acc = teacher.get("test_acc")
    return DatasetCard.from_template(
        card_data,
        template_str=_template_text(),
        pretty_name=card_data.pretty_name,
        source_dataset=source,
        source_url=metadata.get("source_url"),
        source_local=metadata.get("source_local", False),
        norm_layers=metadata.get("norm_layers", {}),
        per_class=args.get("bn_loss", "per_class") == "per_class",
        source_split=metadata.get("source_split", "train"),
        images_per_class=args.get("images_per_class"),
        num_images=metadata.get("num_images"),
        num_classes=metadata.get("num_classes"),
        image_size=metadata.get("image_size", [1, 28, 28])[-1],
        channels=metadata.get("image_size", [1, 28, 28])[0],
        teacher_id=teacher.get("id", "unknown"),
        teacher_architecture=teacher.get("architecture", "unknown"),
        teacher_description=teacher.get("architecture", "a classifier"),
        teacher_accuracy=f"{acc:.4f}" if isinstance(acc, float) else "not recorded",
        teacher_bundled=teacher.get("bundled"),
        arguments={k: v for k, v in args.items() if k != "hub_token"},
        changed_arguments=changed_arguments(args),
        soft_label_epochs=soft_epochs,
        columns=metadata.get("columns", []),
        evaluation=metadata.get("evaluation_markdown"),
        grid_image=grid_image or "",
        repo_id=repo_id,
    ).content


def save_distilled(
    folder: str | os.PathLike,
    dataset: Dataset,
    metadata: dict,
    soft_label_views: Dataset | None = None,
    grid_image: str | os.PathLike | None = None,
    repo_id: str | None = None,
    teacher: Callable[[Path], None] | None = None,
) -> Path:
    """Writes the distilled set in Hub layout (see the module docstring) and returns the folder. ``teacher``, when
    given, writes the teacher into the folder it is passed (``<folder>/teacher``)."""
    folder = Path(folder)
    check_replaceable(folder)
    metadata = dict(metadata)
    metadata["columns"] = list(dataset.column_names)
    with atomic_path(folder, replace_folder=True) as tmp:
        if teacher is not None:
            teacher(tmp / TEACHER_FOLDER)
            metadata["teacher"] = {**metadata.get("teacher", {}), "bundled": TEACHER_FOLDER}
        metadata["data_files"] = {"default": _write_parquet(dataset, tmp / "data")}
        if soft_label_views is not None:
            metadata["data_files"]["soft_labels"] = _write_parquet(soft_label_views, tmp / "soft_labels")
        grid_name = None
        if grid_image is not None and Path(grid_image).exists():
            grid_name = "synthetic_grid.png"
            shutil.copy(grid_image, tmp / grid_name)
        (tmp / "wmdd_hf.json").write_text(json.dumps(metadata, indent=2, default=str))
        name = repo_id or metadata.get("repo_id") or str(folder)  # a local set: the path load_dataset reads
        (tmp / "README.md").write_text(render_card(metadata, name, grid_name))
    return folder


def is_distilled_folder(folder: str | os.PathLike) -> bool:
    """True when ``folder`` was written by :func:`save_distilled` (it holds ``wmdd_hf.json``)."""
    return (Path(folder) / "wmdd_hf.json").is_file()


def check_replaceable(folder: Path, protected: tuple[Path, ...] = ()) -> None:
    """Raises unless ``folder`` is absent, empty, or a distilled folder this library wrote, and is not one of
    ``protected`` (nor a parent of one): the library never deletes what it did not make."""
    resolved = folder.resolve()
    for p in protected:
        p = p.resolve()
        if resolved == p or resolved in p.parents:
            raise FileExistsError(
                f"Refusing to write a distilled set over {folder}: it is (or contains) the run folder {p}. "
                "Choose another path."
            )
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not is_distilled_folder(folder))):
        raise FileExistsError(
            f"Refusing to replace {folder}: it exists and is not a distilled set written by wmdd_hf (no wmdd_hf.json). "
            "Choose a new or empty folder; nothing was deleted."
        )


def copy_distilled(source: Path, path: Path, protected: tuple[Path, ...] = ()) -> Path:
    """Copies a distilled folder to ``path`` (through a temporary copy, then a rename), refusing to replace anything
    :func:`check_replaceable` protects."""
    if path.resolve() == source.resolve():
        return path
    check_replaceable(path, protected=protected)
    with atomic_path(path, replace_folder=True) as tmp:
        shutil.copytree(source, tmp)
    return path


def add_evaluation(folder: str | os.PathLike, result: dict) -> dict:
    """Writes an :func:`wmdd_hf.evaluate_distilled` result into a distilled folder's ``wmdd_hf.json`` and card."""
    p = result["protocol"]
    table = (
        "| protocol | student | steps | top-1 % (mean ± std) | seeds |\n|---|---|---|---|---|\n"
        f"| {p['protocol']} | {p['student']} {p['student_kwargs']} | {p.get('steps')} | {100 * result['acc_mean']:.2f} ± "
        f"{100 * result['acc_std']:.2f} | {result['seeds']} |"
    )
    return update_distilled_metadata(
        folder,
        evaluation={k: v for k, v in result.items() if k != "curves"},
        evaluation_markdown=table
        + f"\n\nStudents tested once on the real evaluation split; protocol: `{json.dumps(p)}`.",
    )


def update_distilled_metadata(folder: str | os.PathLike, **updates) -> dict:
    """Merges ``updates`` into a distilled folder's ``wmdd_hf.json`` and re-renders its README card from it
    (the card keeps its ``configs``: they come from the same metadata)."""
    folder = Path(folder)
    metadata = {**json.loads((folder / "wmdd_hf.json").read_text()), **updates}
    (folder / "wmdd_hf.json").write_text(json.dumps(metadata, indent=2, default=str))
    grid = "synthetic_grid.png" if (folder / "synthetic_grid.png").exists() else None
    (folder / "README.md").write_text(render_card(metadata, metadata.get("repo_id") or folder.name, grid))
    return metadata


def check_repo_id(repo_id: str | None) -> str:
    """``repo_id`` if it is a valid ``user/name`` dataset id (the one rule used everywhere), else :class:`HubError`."""
    if not repo_id or not _REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id:
        raise HubError(
            f"{repo_id!r} is not a valid Hub dataset id: use 'user/name' (letters, digits, '-', '_', '.'; set "
            "hub_dataset_id)."
        )
    return repo_id


def check_hub_token(token: str | None = None) -> str:
    """Asks the Hub who ``token`` (or the logged-in token) belongs to; returns the user name.

    Raises :class:`HubError` when there is no valid token and :class:`HubNetworkError` when the Hub cannot be reached:
    the two are told apart, so a user offline is not told to log in again.
    """
    import httpx
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    no_token = (
        "No valid Hub token: log in with `hf auth login`, set HF_TOKEN, or pass hub_token= / token=. "
        "Nothing was uploaded."
    )
    try:
        return str(HfApi(token=token).whoami().get("name", ""))
    except LocalTokenNotFoundError as error:
        raise HubError(no_token) from error
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        if status in (401, 403):
            raise HubError(no_token) from error
        raise HubNetworkError(
            f"The Hub at {constants.ENDPOINT} answered HTTP {status} to the token check; try again later. "
            "Nothing was uploaded."
        ) from error
    except (httpx.TransportError, OSError) as error:
        raise HubNetworkError(
            f"Could not reach the Hub at {constants.ENDPOINT} ({type(error).__name__}: {error}): a network failure, "
            "not a token problem. Check the connection (or HF_ENDPOINT) and try again. Nothing was uploaded."
        ) from error


def push_distilled(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Uploads a folder written by :func:`save_distilled` to the dataset repo ``repo_id`` in one commit.

    The repo id and the token are checked before anything is created or uploaded. Returns the commit URL.
    """
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    folder = Path(folder)
    if not (folder / "README.md").exists():
        raise HubError(f"{folder} is not a distilled folder (no README.md): run distill() or save_distilled() first.")
    check_hub_token(token)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(folder),
        commit_message=commit_message or "Upload WMDD-distilled dataset",
        delete_patterns=["data/*", "soft_labels/*", f"{TEACHER_FOLDER}/*", "*.png", "*.json", "README.md"],
    )
    return str(getattr(info, "commit_url", info))


def load_distilled(repo_id_or_path: str, token: str | None = None) -> tuple[Dataset, Dataset | None, dict]:
    """``(distilled train split, soft-label views or None, metadata)`` from a Hub id or a local folder."""
    from datasets import load_dataset

    path = Path(repo_id_or_path)
    dataset = load_dataset(str(repo_id_or_path), split="train", token=token)
    if path.is_dir():
        meta_file = path / "wmdd_hf.json"
        metadata = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    else:
        from huggingface_hub import hf_hub_download

        try:
            metadata = json.loads(
                Path(hf_hub_download(repo_id_or_path, "wmdd_hf.json", repo_type="dataset", token=token)).read_text()
            )
        except Exception:  # noqa: BLE001 - a set pushed by other tools has no metadata file
            metadata = {}
    views = None
    if int(metadata.get("arguments", {}).get("soft_label_epochs", 0) or 0) > 0:
        views = load_dataset(str(repo_id_or_path), "soft_labels", split="train", token=token)
    return dataset, views, metadata


def bundled_teacher(repo_id_or_path: str, token: str | None = None) -> str | None:
    """The folder of the teacher a distilled set carries (``teacher/``, downloaded for a Hub id), or None."""
    path = Path(repo_id_or_path)
    if path.is_dir():
        return str(path / TEACHER_FOLDER) if (path / TEACHER_FOLDER / "config.json").exists() else None
    from huggingface_hub import snapshot_download

    local = Path(
        snapshot_download(repo_id_or_path, repo_type="dataset", allow_patterns=[f"{TEACHER_FOLDER}/*"], token=token)
    )
    return str(local / TEACHER_FOLDER) if (local / TEACHER_FOLDER / "config.json").exists() else None
