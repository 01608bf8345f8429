"""How big a run may be: a case's peak memory, estimated before it runs, and the caps on a sweep.

A case holds, on both sides, the parameters and their copies, the gradients,
the updated parameters, z, a and δ of every layer, ∂J/∂x, for float32 the float64
reference, and during the comparison all of these again as float64 pairs with
their masks and differences. BYTES_PER_VALUE is the estimate per parameter or
activation element, set above the largest peak measured per element
(docs/speed.md gives the measurements).
"""
from __future__ import annotations

import os
import re
from typing import Sequence

BYTES_PER_VALUE = 1024           # bytes of peak memory per parameter or activation element
MEMORY_FRACTION = 0.5            # of the memory available when the run starts: the default limit
MAX_EXAMPLES = 10 ** 7           # cases one sweep may draw (about 8 hours at 350 cases/s)
JOBS_PER_CPU = 4                 # worker processes per CPU, at most

_SIZE = re.compile(r"(?P<n>[0-9]+(\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>[kmgt]?)(i?b)?", re.IGNORECASE | re.ASCII)
_UNITS = {"": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}


def case_bytes(widths: Sequence[int], batch: int) -> int:
    """Estimated peak memory of checking one case with these widths and batch size."""
    params = sum(a * b + b for a, b in zip(widths, widths[1:]))
    activations = batch * sum(widths)
    return BYTES_PER_VALUE * (params + activations)


def sweep_case_bytes(max_depth: int, max_width: int, max_batch: int) -> int:
    """The largest case a sweep with these bounds can draw."""
    return case_bytes([max_width] * (max_depth + 1), max_batch)


def available_bytes() -> int | None:
    """Memory available now: MemAvailable (Linux), within a cgroup v2 limit if there is one;
    else the physical memory (os.sysconf); None where neither can be read."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            used = int(f.read().strip())
        if limit != "max":
            found.append(max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            return None
    return min(found)


def default_memory_limit() -> int | None:
    available = available_bytes()
    return None if available is None else int(available * MEMORY_FRACTION)


def parse_size(text: str) -> int:
    """'4G', '512M', '1.5GiB', '1000000' (bytes) -> bytes; ValueError otherwise."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"expected a size like 4G, 512M or a number of bytes, got {text!r}")
    value = int(float(m["n"]) * _UNITS[m["unit"].lower()])
    if value <= 0:
        raise ValueError(f"expected a size above 0, got {text!r}")
    return value


def human(n: float) -> str:
    """Bytes as '7.3 TiB', '512 MiB' ('more than 1024 EiB' beyond)."""
    if n >= 2 ** 70:
        return "more than 1024 EiB"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


def max_jobs() -> int:
    return JOBS_PER_CPU * (os.cpu_count() or 1)
