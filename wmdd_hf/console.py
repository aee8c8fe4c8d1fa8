"""What the command-line scripts print: a closing summary a person reads, and one line for Ctrl-C.

    from wmdd_hf.console import summary
    print(summary(distiller))

The full numbers stay in ``output_dir/metrics.json`` (every key explained in docs/metrics.md).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

#: Below this share of images that the teacher reads as their own class, the summary warns.
LOW_AGREEMENT = 0.9
STAGES = ("statistics", "barycenter", "synthesis", "soft_labels", "save")


def summary(distiller, teacher: str | None = None, dataset: str | None = None) -> str:
    """The end of a run in a few lines: where the set is and how many images, its pictures, the stage times, the
    teacher's agreement with the labels (a warning when low), what was resumed, and the next commands (with the
    ``teacher`` and ``dataset`` the run used, when given)."""
    m, out = distiller.metrics, Path(distiller.args.output_dir)
    lines = [f"Distilled {m.get('num_images', '?')} images -> {out / 'distilled'}"]
    pictures = [out / name for name in ("synthetic_grid.png", "barycenters_pca.png") if (out / name).exists()]
    if pictures:
        lines.append("Pictures: " + ", ".join(str(p) for p in pictures))
    times = [f"{stage} {m[f'{stage}_s']:.1f} s" for stage in STAGES if f"{stage}_s" in m]
    if times:
        lines.append("Stage times: " + ", ".join(times))
    agreement = m.get("teacher_agreement")
    if agreement is not None:
        line = f"Teacher agreement: {agreement:.1%} of the images are read by the teacher as their own class"
        if agreement < LOW_AGREEMENT:
            line += " (low: more iterations, or a higher learning rate, usually raise it; see docs/tuning.md)"
        lines.append(line)
    resumed = m.get("resumed") or {}
    found = [stage for stage in ("statistics", "barycenter") if resumed.get(stage)]
    if found or resumed.get("synthesis_batches"):
        done = f"{resumed.get('synthesis_batches', 0)} synthesis batches" if resumed.get("synthesis_batches") else ""
        lines.append("Resumed from disk: " + ", ".join([*found, *([done] if done else [])]))
    lines.append(f"All numbers: {out / 'metrics.json'} (docs/metrics.md explains each key)")
    evaluate = f"python examples/evaluate.py --distilled {shlex.quote(str(out / 'distilled'))}"
    bundled = (out / "distilled" / "teacher").is_dir()  # the set carries its teacher: evaluate.py finds it
    evaluate += f" --teacher {shlex.quote(teacher)}" if teacher and not bundled else ""
    evaluate += f" --dataset {shlex.quote(dataset)}" if dataset else ""
    lines += [
        "Next:",
        f"  {evaluate}   # train students on the set, test on the real split",
        "  the same command with --push_to_hub --hub_dataset_id <user>/<name>   # resumes (nothing is recomputed), "
        "then publishes",
    ]
    return "\n".join(lines)


def interrupted(output_dir: str | Path) -> int:
    """Prints one line saying how to resume after Ctrl-C and returns the shell's exit code for it (130)."""
    print(
        f"\nInterrupted. Finished stages and class batches are kept in {output_dir}: "
        "run the same command again to resume from there.",
        file=sys.stderr,
    )
    return 130


def log_stages(level: int = logging.INFO) -> None:
    """Shows the library's stage lines (start, end, resume) on the console, without timestamps' clutter."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[wmdd_hf] %(message)s"))
    log = logging.getLogger("wmdd_hf")
    if not any(getattr(h, "_wmdd_hf_console", False) for h in log.handlers):
        handler._wmdd_hf_console = True
        log.addHandler(handler)
    log.setLevel(level)


def run(main: Callable[[], None]) -> int:
    """Runs a script's ``main`` and returns its exit code. The library's own errors about the input (a dataset, an
    output folder, the Hub, a missing teacher, a non-finite loss) print once, as one message without a traceback:
    under ``accelerate launch`` only the first process prints them (``WMDD_HF_TRACEBACK=1`` shows the tracebacks).
    Anything else is a bug and keeps its traceback."""
    from .checkpoint import OutputDirError
    from .data import DatasetValidationError
    from .hub import HubError
    from .synthesis import NonFiniteLossError

    try:
        main()
    except (DatasetValidationError, OutputDirError, HubError, NonFiniteLossError, FileNotFoundError) as error:
        if os.environ.get("WMDD_HF_TRACEBACK"):
            raise
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
