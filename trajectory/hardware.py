"""The one description of the machine a benchmark ran on, written into every results file."""

from __future__ import annotations

import os
import platform
import subprocess
import sys


def hardware() -> str:
    """CPU model, cores, memory and OS; the GPU when torch is loaded and sees one."""
    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(
            (line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line),
            cpu,
        )
    except (OSError, subprocess.CalledProcessError):
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        text += f", {memory:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    text += f", {platform.system()} {platform.release()}"
    torch = sys.modules.get("torch")  # never imported just for this
    if torch is not None and torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text
