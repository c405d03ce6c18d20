"""Is there a GPU to use, asked without paying for `import torch` where the answer is plainly no.

Importing torch costs about 3 CPU s; on a CPU Space or a laptop that is a tenth of the cold start
spent learning "no". Two cheap facts answer first:
- ZeroGPU (`SPACES_ZERO_GPU` set by the platform): the main process has no GPU, but each
  `@spaces.GPU` call gets one, and the `spaces` package makes torch report CUDA; so yes.
- No NVIDIA kernel driver (`/proc/driver/nvidia/version` absent): no CUDA device can exist; so no.
Otherwise torch decides. Shortcut on purpose: other accelerators (ROCm, MPS) count as no GPU.
"""

from __future__ import annotations

import os
from pathlib import Path

NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # present whenever the NVIDIA kernel module is loaded


def cuda_available() -> bool:
    if os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "true", "yes"):
        return True
    if not NVIDIA_DRIVER.exists():
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()
