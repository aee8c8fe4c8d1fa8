"""Argument parsing shared by the example scripts: CLI flags and YAML/JSON config files alike (``--config``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

from .arguments import RESEARCH_FIELDS, nest_research_options


def parse_args(dataclass_types: tuple[type, ...], args: list[str] | None = None) -> tuple[Any, ...]:
    """Parses ``dataclass_types`` from ``args`` (default ``sys.argv[1:]``).

    ``--config file.yaml`` (or ``.json``) supplies defaults; flags given on the command line override them.
    """
    args = list(sys.argv[1:] if args is None else args)
    parser = HfArgumentParser(dataclass_types)
    args = _nest_research_flags(args)
    if "--config" in args:
        i = args.index("--config")
        path = args[i + 1]
        del args[i : i + 2]
        import json

        import yaml

        with open(path) as f:
            config = yaml.safe_load(f) if path.endswith((".yaml", ".yml")) else json.load(f)
        config = nest_research_options(config, path)
        # Flags given on the command line win over the file.
        flat = []
        for key, value in config.items():
            if f"--{key}" in args:
                continue
            if isinstance(value, dict):  # e.g. research_options: one JSON flag
                flat += [f"--{key}", json.dumps(value)]
            elif isinstance(value, (list, tuple)):
                flat += [f"--{key}", *map(str, value)]
            else:
                flat += [f"--{key}", str(value)]
        args = flat + args
    return parser.parse_args_into_dataclasses(args=args)


def _nest_research_flags(args: list[str]) -> list[str]:
    """``--loss_scale sum`` (a research option given as a flag of its own, the form before ``research_options``)
    becomes part of one ``--research_options`` JSON flag, with a ``FutureWarning``."""
    import json

    flat, rest, i = {}, [], 0
    while i < len(args):
        name = args[i][2:].replace("-", "_") if args[i].startswith("--") else None
        if name in RESEARCH_FIELDS and i + 1 < len(args):
            flat[name] = _flag_value(args[i + 1])
            i += 2
            continue
        rest.append(args[i])
        i += 1
    if not flat:
        return args
    if "--research_options" in rest:
        j = rest.index("--research_options")
        flat = {**flat, **json.loads(rest[j + 1])}
        del rest[j : j + 2]
    nested = nest_research_options(flat, "command line")["research_options"]
    return [*rest, "--research_options", json.dumps(nested)]


def _flag_value(text: str):
    """A flag's text as the JSON value it spells (``0.1`` -> 0.1, ``True`` -> true), else as a string."""
    import json

    lowered = {"true": True, "false": False, "none": None}.get(text.lower(), text)
    if lowered is not text:
        return lowered
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


#: The teacher the example scripts use by default: the project's own, committed under ``checkpoints/``.
DEFAULT_TEACHER = "checkpoints/fashion-mnist-convnet64"
#: The repository root of a source checkout (where ``checkpoints/`` lives), or of the editable install.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve_teacher(teacher: str, root: Path | None = None) -> str:
    """``teacher`` as given, except the default: from another working directory it resolves to the project's
    checkpoint, and where there is none (an installed wheel) the error says how to pass a teacher instead of the
    Hub client retrying a name that is no Hub id."""
    if teacher != DEFAULT_TEACHER or Path(teacher).exists():
        return teacher
    project = (root or PROJECT_ROOT) / DEFAULT_TEACHER
    if project.exists():
        return str(project)
    raise FileNotFoundError(
        f"The default teacher {DEFAULT_TEACHER!r} is the project's checkpoint and is not here (looked in "
        f"{Path.cwd()} and {root or PROJECT_ROOT}). Run from a clone of the repository, or pass --teacher: a folder "
        "saved by examples/train_teacher.py, a timm name or a transformers model id."
    )
