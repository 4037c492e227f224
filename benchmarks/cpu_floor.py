"""The CPU floor of SPEC section 4: multiply-adds at this machine's FMA rate.

The rate is measured in the same run: one thread's float32 sgemm (1024^3) rate times
the threads the kernels use. A tanh counts as 10 multiply-adds (a float32-accurate
vector tanh), so with T = N*O*(C/g)*kH*kW*Ho*Wo (the size of sigma):
  forward          : 2*T*(kH*kW + 1 + 10) flops   (sigma, K*X, tanh)
  forward+backward : 2*T*(4*kH*kW + 4 + 20) flops (the backward recomputes sigma and
                     tanh, then dQ, dX through the kernel and the direct term);
                     without the input's gradient (a first layer) 2*T*(3*kH*kW + 3 + 20)
The machine is shared, so the sgemm is timed at the start and again before every
case; the floor uses the fastest rate seen in the run (the conservative choice: a
rate measured while other jobs ran would lower the floor's bar).

Beside it, the CPU's own FMA peak (fma_peak.py) at the same thread count: where torch's
BLAS does not run the widest vectors, the sgemm floor is lower than the machine's, and
"% of FMA peak" is the distance to the hardware's limit.
"""

from __future__ import annotations

import platform
import statistics
import time
from typing import Optional

import torch

from . import fma_peak

TANH_FMAS = 10
SGEMM_SIZE = 1024


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sgemm_rate_one_thread(reps: int = 10) -> float:
    """float32 flop/s of one thread on a SGEMM_SIZE^3 matrix product (median of reps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(SGEMM_SIZE, SGEMM_SIZE, generator=g)
        b = torch.randn(SGEMM_SIZE, SGEMM_SIZE, generator=g)
        out = torch.empty(SGEMM_SIZE, SGEMM_SIZE)
        for _ in range(2):
            torch.mm(a, b, out=out)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return 2 * SGEMM_SIZE**3 / statistics.median(times)


class CpuRate:
    """The sgemm rates measured during a run; `rate()` is the floor's flop/s."""

    def __init__(self) -> None:
        self.threads = torch.get_num_threads()
        self.samples = [sgemm_rate_one_thread()]
        self.peak = fma_peak.peak_flops()  # {'isa', 'flops'} of one thread, or None

    def sample(self) -> float:
        self.samples.append(sgemm_rate_one_thread())
        return self.samples[-1]

    def rate(self) -> float:
        return max(self.samples) * self.threads

    def peak_rate(self) -> Optional[float]:
        """The FMA peak at the threads used (flop/s), None where not measured."""
        return self.peak["flops"] * self.threads if self.peak else None

    def case_floor(self, shape, n: int, input_grad: bool = True) -> dict:
        return case_floor(shape, n, self.rate(), input_grad, self.peak_rate())

    def rebase(self, cases: list) -> None:
        """Floors and % of floor of finished cases, recomputed at the run's final rate."""
        from .shapes import SHAPES

        for case in cases:
            if not case.get("floor"):
                continue
            floor = case["floor"] = self.case_floor(SHAPES[case["name"]], case["N"], case.get("input_grad", True))
            for r in case["results"]:
                if r.get("pct_floor_fwd") is not None:
                    r.update(percentages(floor, r))

    def info(self) -> dict:
        return {"sgemm_size": SGEMM_SIZE, "threads": self.threads,
                "sgemm_1thread_flops_samples": self.samples,
                "sgemm_1thread_flops": max(self.samples), "rate_flops": self.rate(),
                "fma_peak_isa": self.peak and self.peak["isa"],
                "fma_peak_1thread_flops": self.peak and self.peak["flops"]}


def flops(shape, n: int, input_grad: bool = True) -> dict:
    k2, t = shape.k * shape.k, shape.tanh_evals(n)
    # dX costs k2 + 1 multiply-adds per sigma element: through the kernel and the direct term
    bwd_dx = (k2 + 1) if input_grad else 0
    return {"fwd": 2 * t * (k2 + 1 + TANH_FMAS), "fwdbwd": 2 * t * (3 * k2 + 3 + bwd_dx + 2 * TANH_FMAS)}


def case_floor(shape, n: int, rate_flops: float, input_grad: bool = True,
               peak_flops: Optional[float] = None) -> dict:
    """SPEC's floor at `rate_flops`; with `peak_flops` (the FMA peak), also the times at
    that rate under "fma_peak"."""
    f = flops(shape, n, input_grad)
    fwd_s, fwdbwd_s = f["fwd"] / rate_flops, f["fwdbwd"] / rate_flops
    floor = {"fwd_s": fwd_s, "fwdbwd_s": fwdbwd_s, "flops": f, "rate_flops": rate_flops,
             "fwd": {"bound": "fma", "floor_s": fwd_s}, "bwd": {"bound": "fma", "floor_s": fwdbwd_s - fwd_s}}
    if peak_flops:
        floor["fma_peak"] = {"fwd_s": f["fwd"] / peak_flops, "fwdbwd_s": f["fwdbwd"] / peak_flops,
                             "rate_flops": peak_flops}
    return floor


def percentages(floor: dict, times: dict) -> dict:
    """% of the floor (and of the FMA peak, where the floor has it) of a result's
    fwd_s and fwdbwd_s."""
    out = {"pct_floor_fwd": 100 * floor["fwd_s"] / times["fwd_s"],
           "pct_floor_fwdbwd": 100 * floor["fwdbwd_s"] / times["fwdbwd_s"]}
    if floor.get("fma_peak"):
        out["pct_peak_fwd"] = 100 * floor["fma_peak"]["fwd_s"] / times["fwd_s"]
        out["pct_peak_fwdbwd"] = 100 * floor["fma_peak"]["fwdbwd_s"] / times["fwdbwd_s"]
    return out
