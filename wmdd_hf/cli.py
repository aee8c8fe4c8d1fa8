"""Argument parsing shared by the example scripts: CLI flags and YAML/JSON config files alike (``--config``)."""

from __future__ import annotations

import sys
from typing import Any

from transformers import HfArgumentParser


def parse_args(dataclass_types: tuple[type, ...], args: list[str] | None = None) -> tuple[Any, ...]:
    """Parses ``dataclass_types`` from ``args`` (default ``sys.argv[1:]``).

    ``--config file.yaml`` (or ``.json``) supplies defaults; flags given on the command line override them.
    """
    args = list(sys.argv[1:] if args is None else args)
    parser = HfArgumentParser(dataclass_types)
    if "--config" in args:
        i = args.index("--config")
        path = args[i + 1]
        del args[i : i + 2]
        import json

        import yaml

        with open(path) as f:
            config = yaml.safe_load(f) if path.endswith((".yaml", ".yml")) else json.load(f)
        # Flags given on the command line win over the file.
        flat = []
        for key, value in config.items():
            if f"--{key}" in args:
                continue
            if isinstance(value, (list, tuple)):
                flat += [f"--{key}", *map(str, value)]
            else:
                flat += [f"--{key}", str(value)]
        args = flat + args
    return parser.parse_args_into_dataclasses(args=args)
