"""Child process of the CPU memory measurement: one implementation, one case.

Run by measure.cpu_peak_child in a process forked from a multiprocessing fork server
(which has torch imported already, so a child costs no import time). Measures the peak
RSS above the inputs for a forward alone and for a forward+backward: the kernel's
high-water mark VmHWM is reset before each measured call by writing 5 to
/proc/self/clear_refs, so neither the imports nor the warm-up count.

ru_maxrss is not used: a process started by exec inherits its parent's peak in it
(signal->maxrss), so a child of a big benchmark process would report the parent's RSS.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import time

# imported here so that the fork server preloads them (the children then fork with them)
import torch  # noqa: F401

from . import impls as I
from .runner import Runner, is_oom, short
from .shapes import SHAPES


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"no {key} in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _measure(call) -> int:
    gc.collect()
    base = _status_kb("VmRSS")
    _reset_peak()
    call()
    return max(0, _status_kb("VmHWM") - base) * 1024


def _fixed_mmap_threshold() -> None:
    """glibc: serve every block >= 64 KiB by mmap and return it to the OS when freed,
    so the RSS after warm-up is the inputs, not the warm-up's freed leftovers."""
    try:
        ctypes.CDLL(None).mallopt(-3, 65536)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def child_main(spec: dict, conn) -> None:
    try:
        _fixed_mmap_threshold()
        _reset_peak()  # fails early where /proc/self/clear_refs is missing (not Linux)
        shape = SHAPES[spec["shape"]]
        inp = I.make_inputs(shape, spec["n"], I.DTYPES[spec["dtype"]], "cpu", input_grad=spec["input_grad"])
        fn, params = I.build(spec["impl"], shape, inp)
        run = Runner(fn, params, inp["grad_out"])
        t0 = time.perf_counter()
        run.fwd()  # warm-up (and the no-grad compile of torch.compile)
        t_fwd = time.perf_counter() - t0
        if spec["warm_fwdbwd"]:
            run.fwdbwd()
        run.clear()
        run.last = None
        if spec.get("mem_cap_mb"):
            import resource

            # what is mapped now plus the cap: an allocation beyond it fails as a real OOM would
            cap = _status_kb("VmSize") * 1024 + spec["mem_cap_mb"] * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
        fwd_bytes = _measure(run.fwd)
        run.last = None
        run.clear()
        fwdbwd_bytes = _measure(run.fwdbwd)
        conn.send({
            "status": "ok",
            "fwd_bytes": fwd_bytes,
            "fwdbwd_bytes": fwdbwd_bytes,
            "method": "child VmHWM (reset via /proc/self/clear_refs) - VmRSS after inputs and warm-up",
            "child_first_fwd_s": t_fwd,
        })
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send({"status": "oom" if is_oom(exc) else "error", "reason": short(exc)})
    finally:
        conn.close()
        sys.stdout.flush()
