"""The GPU floor's SM clock (benchmarks/floors.py), with the device faked: no GPU needed.

CUDA 13 removed cudaDeviceProp.clockRate, so torch built for it has no clock_rate; the
clock then comes from the driver's attribute, or nvidia-smi, and the JSON says which."""

from __future__ import annotations

import ctypes
import subprocess
from types import SimpleNamespace

import pytest
import torch

from benchmarks import floors

H200 = dict(name="NVIDIA H200", major=9, minor=0, multi_processor_count=132, total_memory=143 << 30)


class FakeLibcuda:
    def __init__(self, khz: int):
        self.khz, self.asked = khz, []

    def cuInit(self, flags):
        return 0

    def cuDeviceGet(self, dev_ref, index):
        dev_ref._obj.value = index
        return 0

    def cuDeviceGetAttribute(self, value_ref, attribute, dev):
        self.asked.append((attribute, dev.value))
        value_ref._obj.value = self.khz
        return 0


@pytest.fixture
def device(monkeypatch):
    """Fakes device 0's properties, libcuda and nvidia-smi; returns the knobs to set."""
    fake = SimpleNamespace(props=dict(H200), libcuda=None, smi_mhz=None, smi_calls=[])
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i=0: SimpleNamespace(**fake.props))

    def cdll(name, *a, **k):
        if fake.libcuda is None:
            raise OSError(f"{name}: cannot open shared object file")
        return fake.libcuda

    def run(cmd, **kwargs):
        fake.smi_calls.append(cmd)
        if fake.smi_mhz is None:
            raise FileNotFoundError("nvidia-smi")
        return subprocess.CompletedProcess(cmd, 0, stdout=f"{fake.smi_mhz}\n", stderr="")

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    monkeypatch.setattr(subprocess, "run", run)
    return fake


def test_cuda13_clock_from_driver_attribute(device):
    device.libcuda = FakeLibcuda(1_980_000)  # kHz, as the attribute gives it
    info = floors.gpu_info(0)
    assert info["sm_clock_khz"] == 1_980_000
    assert info["clock_source"] == "cuDeviceGetAttribute(CU_DEVICE_ATTRIBUTE_CLOCK_RATE)"
    assert device.libcuda.asked == [(13, 0)]  # cudaDevAttrClockRate == CU_DEVICE_ATTRIBUTE_CLOCK_RATE == 13
    assert device.smi_calls == []
    # the rates follow: 132 SMs x 1.98 GHz x 2048 16-bit multiply-adds, x 16 (x2 packed) tanh
    rates = floors.peak_rates(info, torch.bfloat16)
    assert rates["fma_per_s"] == pytest.approx(132 * 1.98e9 * 2048)
    assert rates["tanh_per_s"] == pytest.approx(132 * 1.98e9 * 32)
    assert floors.peak_rates(info, torch.float32)["fma_per_s"] == pytest.approx(132 * 1.98e9 * 128)


def test_clock_from_nvidia_smi_when_the_driver_library_fails(device):
    device.smi_mhz = 1980
    info = floors.gpu_info(0)
    assert (info["sm_clock_khz"], info["clock_source"]) == (1_980_000, "nvidia-smi clocks.max.sm")
    cmd = device.smi_calls[0]
    assert "--query-gpu=clocks.max.sm" in cmd and "--id=0" in cmd


def test_clock_from_properties_before_cuda13(device):
    device.props["clock_rate"] = 1_410_000
    device.libcuda = FakeLibcuda(1)  # must not be asked
    assert floors.sm_clock_khz(0) == (1_410_000, "torch device properties (clock_rate)")
    assert device.libcuda.asked == []


def test_driver_error_falls_through(device):
    device.libcuda = FakeLibcuda(1_980_000)
    device.libcuda.cuInit = lambda flags: 100  # CUDA_ERROR_NO_DEVICE
    device.smi_mhz = 1755
    assert floors.sm_clock_khz(0) == (1_755_000, "nvidia-smi clocks.max.sm")


def test_unknown_clock_is_recorded_and_gives_no_floor(device):
    info = floors.gpu_info(0)
    assert info["sm_clock_khz"] == 0
    assert info["clock_source"].startswith("unknown: ")
    assert "cuDeviceGetAttribute" in info["clock_source"] and "nvidia-smi" in info["clock_source"]
    assert floors.peak_rates(info, torch.float32) is None


def test_backward_floor_without_input_grad():
    """SPEC section 3: the first layers train without the input's gradient; their backward
    floor drops the dX multiply-adds (2 kH kW + 1 per tanh instead of 3 kH kW + 1) and the dx write."""
    from benchmarks.shapes import SHAPES

    rates = {"tanh_per_s": 1e12, "fma_per_s": 1e13}
    shape = SHAPES["lenet-mnist"]
    t, x = shape.tanh_evals(256), 256 * shape.C * shape.H * shape.W
    full = floors.case_floor(shape, 256, torch.bfloat16, rates, 3e12)
    first = floors.case_floor(shape, 256, torch.bfloat16, rates, 3e12, input_grad=False)
    assert full["bwd"]["fma"] == (3 * 25 + 1) * t and first["bwd"]["fma"] == (2 * 25 + 1) * t
    assert full["bwd"]["bytes"] - first["bwd"]["bytes"] == 2 * x
    assert first["fwd"] == full["fwd"] and first["fwdbwd_s"] <= full["fwdbwd_s"]
