"""The GPU floor of SPEC section 4: the time a case needs at the device's peak rates.

floor = max(tanh evaluations / special-function rate,
            multiply-adds / the fastest unit the dtype can use,
            bytes that must move / measured bandwidth)

The fused backward recomputes sigma and K (they are never stored), so from the
gradient formulas of SPEC section 1, per element of sigma (T = N*O*(C/g)*kH*kW*Ho*Wo):
  forward : 1 tanh, kH*kW + 1 multiply-adds (sigma, then K*X)
  backward: 1 tanh (recomputed), 3*kH*kW + 1 multiply-adds
            (sigma again, dQ, dX through the kernel, and the direct term dX += g*t);
            without the input's gradient (a first layer, SPEC section 3) 2*kH*kW + 1
            (sigma again, dQ, dbeta) and no dx written
The forward+backward floor is the forward floor plus the backward floor (two passes).
"""

from __future__ import annotations

import statistics
from typing import Optional

import torch

TANH_PER_SM_CLK = 16  # SFU rate on sm_80/sm_90 (SPEC section 4)

# Multiply-adds per SM per clock. FP32 FMA units: 64 lanes on sm_70/75/80, 128 from sm_86.
# Dense matrix units, 16-bit inputs with float32 accumulation (data-centre parts; TF32 is
# half of it): A100 (8.0) 1024, H100 (9.0) 2048, B200 (10.0) 4096, A10/L40 (8.6/8.9) 512
# (GeForce parts run float32 accumulation at half that: the floor is then optimistic).
_FP32_FMA = {(7, 0): 64, (7, 5): 64, (8, 0): 64}
_MMA_16BIT = {(7, 0): 512, (7, 5): 512, (8, 0): 1024, (8, 6): 512, (8, 7): 512, (8, 9): 512,
              (9, 0): 2048, (10, 0): 4096}


CU_DEVICE_ATTRIBUTE_CLOCK_RATE = 13  # = cudaDevAttrClockRate: the peak SM clock, kHz


def _clock_from_properties(index: int) -> int:
    # cudaDeviceProp.clockRate: gone in CUDA 13, so torch built for it has no clock_rate
    return getattr(torch.cuda.get_device_properties(index), "clock_rate", 0) or 0


def _clock_from_driver(index: int) -> int:
    """cuDeviceGetAttribute(CU_DEVICE_ATTRIBUTE_CLOCK_RATE): the CUDA 13 way (the runtime's
    cudaDeviceGetAttribute(cudaDevAttrClockRate) reads the same attribute)."""
    import ctypes

    cuda = ctypes.CDLL("libcuda.so.1")
    dev, value = ctypes.c_int(), ctypes.c_int()
    for rc in (cuda.cuInit(0), cuda.cuDeviceGet(ctypes.byref(dev), index),
               cuda.cuDeviceGetAttribute(ctypes.byref(value), CU_DEVICE_ATTRIBUTE_CLOCK_RATE, dev)):
        if rc != 0:
            raise RuntimeError(f"CUDA driver error {rc}")
    return value.value


def _clock_from_nvidia_smi(index: int) -> int:
    import subprocess

    out = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=clocks.max.sm",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    return int(float(out.split()[0])) * 1000  # MHz


# Tried in this order; the first that gives a clock is recorded as the source.
CLOCK_SOURCES = (
    ("torch device properties (clock_rate)", _clock_from_properties),
    ("cuDeviceGetAttribute(CU_DEVICE_ATTRIBUTE_CLOCK_RATE)", _clock_from_driver),
    ("nvidia-smi clocks.max.sm", _clock_from_nvidia_smi),
)


def sm_clock_khz(index: int = 0):
    """(peak SM clock in kHz, where it came from); (0, 'unknown: ...') if no source gives one."""
    failures = []
    for source, read in CLOCK_SOURCES:
        try:
            khz = int(read(index) or 0)
        except Exception as exc:  # noqa: BLE001 - the next source is tried
            failures.append(f"{source}: {type(exc).__name__}: {exc}")
            continue
        if 0 < khz < 100_000:  # a value in MHz (no GPU runs below 100 MHz)
            khz *= 1000
        if khz > 0:
            return khz, source
        failures.append(f"{source}: no value")
    return 0, "unknown: " + "; ".join(failures)


def gpu_info(index: int = 0) -> dict:
    props = torch.cuda.get_device_properties(index)
    clock_khz, source = sm_clock_khz(index)
    return {
        "name": props.name,
        "capability": [props.major, props.minor],
        "sm_count": props.multi_processor_count,
        "sm_clock_khz": clock_khz,
        "clock_source": source,
        "total_memory_bytes": props.total_memory,
    }


def measure_bandwidth(reps: int = 20) -> float:
    """Device memory bandwidth in bytes/s: a large device-to-device copy (read + write)."""
    free, _ = torch.cuda.mem_get_info()
    nbytes = min(1 << 30, free // 4)
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    times = []
    for _ in range(3 + reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * nbytes / statistics.median(times[3:])


def peak_rates(info: dict, dtype: torch.dtype) -> Optional[dict]:
    """Peak tanh and multiply-add rates per second; None if the clock is unknown."""
    if not info.get("sm_clock_khz"):
        return None
    cc = tuple(info["capability"])
    per_sm_clk = info["sm_count"] * info["sm_clock_khz"] * 1e3
    sixteen_bit = dtype in (torch.float16, torch.bfloat16)
    # the packed two-at-once tanh of 16-bit types counts half (SPEC section 4)
    tanh = TANH_PER_SM_CLK * (2 if sixteen_bit else 1) * per_sm_clk
    if sixteen_bit:
        mma = _MMA_16BIT.get(cc)
        fma, unit = (mma * per_sm_clk, "tensor cores (16-bit)") if mma else (None, f"unknown for sm_{cc[0]}{cc[1]}")
    else:
        # float32 (and float64, approximately) on the FMA units; a backend that uses
        # TF32 matrix units could go below this multiply-add time.
        fma, unit = _FP32_FMA.get(cc, 128) * per_sm_clk, "FP32 FMA units"
    return {"tanh_per_s": tanh, "fma_per_s": fma, "fma_unit": unit}


def _pass_floor(tanh: float, fma: float, nbytes: float, rates: dict, bandwidth: float) -> dict:
    terms = {
        "tanh_s": tanh / rates["tanh_per_s"],
        "fma_s": fma / rates["fma_per_s"] if rates["fma_per_s"] else 0.0,
        "bytes_s": nbytes / bandwidth,
    }
    bound = max(terms, key=terms.get)
    return {**terms, "floor_s": terms[bound], "bound": bound[:-2], "tanh": tanh, "fma": fma, "bytes": nbytes}


def case_floor(shape, n: int, dtype: torch.dtype, rates: dict, bandwidth: float,
               input_grad: bool = True) -> Optional[dict]:
    if not rates or not bandwidth:
        return None
    k2, cg, ho = shape.k * shape.k, shape.C // shape.groups, shape.out_size()
    t = shape.tanh_evals(n)
    es = torch.tensor([], dtype=dtype).element_size()
    x = n * shape.C * shape.H * shape.W
    q = shape.O * cg * k2 * k2
    beta = shape.O * cg * k2
    y = n * shape.O * ho * ho
    fwd = _pass_floor(t, (k2 + 1) * t, es * (x + q + beta + shape.O + y), rates, bandwidth)
    # backward reads x, Q, beta, dL/dy and writes dx (with the input's gradient), dQ, dbeta, dbias
    macs = (3 if input_grad else 2) * k2 + 1
    bwd = _pass_floor(t, macs * t, es * ((2 if input_grad else 1) * x + 2 * (q + beta) + y + shape.O), rates,
                      bandwidth)
    return {"fwd": fwd, "bwd": bwd, "fwd_s": fwd["floor_s"], "fwdbwd_s": fwd["floor_s"] + bwd["floor_s"]}
