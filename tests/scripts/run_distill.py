"""A tiny end-to-end distillation for the subprocess tests (one process, two processes, killed and resumed).

python tests/scripts/run_distill.py TEACHER_DIR DATASET_DIR OUTPUT_DIR ITERATIONS
"""

import sys

import torch
from datasets import load_from_disk

from wmdd_hf import DistillationArguments, Distiller

torch.set_num_threads(1)
teacher, data, output_dir, iterations = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
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
