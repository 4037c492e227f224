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
"""

from __future__ import annotations

import statistics
import time

import torch

TANH_FMAS = 10
SGEMM_SIZE = 1024


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

    def sample(self) -> float:
        self.samples.append(sgemm_rate_one_thread())
        return self.samples[-1]

    def rate(self) -> float:
        return max(self.samples) * self.threads

    def rebase(self, cases: list) -> None:
        """Floors and % of floor of finished cases, recomputed at the run's final rate."""
        from .shapes import SHAPES

        for case in cases:
            if not case.get("floor"):
                continue
            floor = case["floor"] = case_floor(SHAPES[case["name"]], case["N"], self.rate(),
                                               case.get("input_grad", True))
            for r in case["results"]:
                if r.get("pct_floor_fwd") is not None:
                    r["pct_floor_fwd"] = 100 * floor["fwd_s"] / r["fwd_s"]
                    r["pct_floor_fwdbwd"] = 100 * floor["fwdbwd_s"] / r["fwdbwd_s"]

    def info(self) -> dict:
        return {"sgemm_size": SGEMM_SIZE, "threads": self.threads,
                "sgemm_1thread_flops_samples": self.samples,
                "sgemm_1thread_flops": max(self.samples), "rate_flops": self.rate()}


def flops(shape, n: int, input_grad: bool = True) -> dict:
    k2, t = shape.k * shape.k, shape.tanh_evals(n)
    # dX costs k2 + 1 multiply-adds per sigma element: through the kernel and the direct term
    bwd_dx = (k2 + 1) if input_grad else 0
    return {"fwd": 2 * t * (k2 + 1 + TANH_FMAS), "fwdbwd": 2 * t * (3 * k2 + 3 + bwd_dx + 2 * TANH_FMAS)}


def case_floor(shape, n: int, rate_flops: float, input_grad: bool = True) -> dict:
    f = flops(shape, n, input_grad)
    fwd_s, fwdbwd_s = f["fwd"] / rate_flops, f["fwdbwd"] / rate_flops
    return {"fwd_s": fwd_s, "fwdbwd_s": fwdbwd_s, "flops": f, "rate_flops": rate_flops,
            "fwd": {"bound": "fma", "floor_s": fwd_s}, "bwd": {"bound": "fma", "floor_s": fwdbwd_s - fwd_s}}
