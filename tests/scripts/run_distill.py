"""A tiny end-to-end distillation for the subprocess tests (one process, two processes, killed and resumed).

python tests/scripts/run_distill.py TEACHER_DIR DATASET_DIR OUTPUT_DIR ITERATIONS

With ``WMDD_TEST_HANG_IN=statistics|barycenters|save`` the run writes ``OUTPUT_DIR/.hanging`` in the middle of that
stage and then waits forever, so that a test can SIGKILL it at a known point.
"""

import os
import sys
import time
from pathlib import Path

import torch
from datasets import load_from_disk

import wmdd_hf.distiller as distiller_module
import wmdd_hf.hub as hub_module
import wmdd_hf.statistics as statistics_module
from wmdd_hf import DistillationArguments, Distiller

torch.set_num_threads(1)
teacher, data, output_dir, iterations = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def hang():
    Path(output_dir, ".hanging").write_text(str(os.getpid()))
    while True:
        time.sleep(1)


stage = os.environ.get("WMDD_TEST_HANG_IN")
if stage == "statistics":  # after the first batches have gone through the teacher
    original_statistics = distiller_module.collect_class_statistics

    def hanging_statistics(teacher, batches, *args, **kwargs):
        def first_batches():
            for i, batch in enumerate(batches):
                if i == 1:
                    hang()
                yield batch

        return original_statistics(teacher, first_batches(), *args, **kwargs)

    distiller_module.collect_class_statistics = hanging_statistics
elif stage == "barycenters":  # after some classes are done
    original_barycenter = distiller_module.wasserstein_barycenter
    done = []

    def hanging_barycenter(*args, **kwargs):
        done.append(1)
        if len(done) == 4:
            hang()
        return original_barycenter(*args, **kwargs)

    distiller_module.wasserstein_barycenter = hanging_barycenter
elif stage == "save":  # after the first parquet file of the distilled folder is written
    original_parquet = hub_module._write_parquet

    def hanging_parquet(*args, **kwargs):
        out = original_parquet(*args, **kwargs)
        hang()
        return out

    hub_module._write_parquet = hanging_parquet
assert statistics_module  # imported for its module object only

args = DistillationArguments(
    output_dir=output_dir,
    images_per_class=2,
    iterations=iterations,
    batch_size=4,
    logging_steps=5,
    disable_tqdm=True,
    save_plots=False,
    seed=7,
)
distiller = Distiller(teacher, args, load_from_disk(data))
distiller.distill()
if distiller.accelerator.is_main_process:
    print("processes", distiller.accelerator.num_processes, "synthesized", distiller.state.synthesized_batches)
