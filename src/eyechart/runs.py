"""Run folders: every job writes one folder per run, ``<report-dir>/<YYYYmmdd-HHMMSS>[-n]-<job>``.

The job name stays last so ``reports/*-load`` and ``reports/*-conform`` find every run of a job; a
second run in the same second gets ``-2``, ``-3``... before it, never an existing folder.
"""

from __future__ import annotations

import time
from pathlib import Path


def new_run_dir(report_dir: Path | str, job: str, *, create: bool = True) -> Path:
    """A fresh run folder of ``job`` under ``report_dir`` (made, with parents, unless ``create=False``)."""
    base = Path(report_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    n = 1
    while True:
        path = base / (f"{stamp}-{job}" if n == 1 else f"{stamp}-{n}-{job}")
        if not path.exists():
            if not create:
                return path
            try:
                path.mkdir(parents=True)
                return path
            except FileExistsError:  # another process took it between the check and the mkdir
                pass
        n += 1
