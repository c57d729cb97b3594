"""Phantom generation benchmark: seconds per 40-slice case at each matrix, alone and
beside a torch training step running in the same process (as `radassist train
--dataset synthetic…` generates its cases).

    .venv/bin/python bench/phantoms.py [--cases 6] [--threads 2]

Target (DESIGN.md §7): a 40-slice case in well under a second.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from assistant.analysis.model.network import CnnRnn
from assistant.training.phantoms import make_case

MATRICES = (128, 256, 512)


def seconds_per_case(matrix: int, cases: int) -> float:
    start = time.perf_counter()
    for seed in range(cases):
        make_case(seed, seed % 2 == 0, max_slices=40, matrix=matrix)
    return (time.perf_counter() - start) / cases


class BusyTraining:
    """Training steps of the default CNN-RNN on random slices, in a thread, until stopped."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        network = CnnRnn()
        optimiser = torch.optim.AdamW(network.parameters())
        slices = torch.rand(1, 24, 3, 128, 128)
        while not self.stop.is_set():
            loss = network(slices).study_logit.sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

    def __enter__(self) -> BusyTraining:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    make_case(0, True, max_slices=4, matrix=128)  # imports and first allocations
    alone = {matrix: seconds_per_case(matrix, args.cases) for matrix in MATRICES}
    with BusyTraining():
        busy = {matrix: seconds_per_case(matrix, args.cases) for matrix in MATRICES}
    print(
        f"phantoms: {args.cases} cases of 40 slices per matrix, torch on {args.threads} threads\n"
    )
    print("| matrix | s/case alone | s/case beside training |")
    print("|---|---|---|")
    for matrix in MATRICES:
        print(f"| {matrix}² | {alone[matrix]:.2f} | {busy[matrix]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
