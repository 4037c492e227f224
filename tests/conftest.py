"""Shared helpers: random problems, SPEC section 2 tolerances, relative error."""

import sys
from pathlib import Path

import pytest
import torch

# The examples' tests import examples.*, and bare `pytest` does not put the repository
# root on sys.path; append (not insert) so that an installed adaptive_conv_ext, with its
# compiled kernels, still wins.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

# SPEC section 2: ||out - ref|| / ||ref|| against the float64 reference.
TOLERANCE = {
    torch.float64: 1e-12,
    torch.float32: 1e-6,
    torch.float16: 5e-3,
    torch.bfloat16: 2e-2,
}


def rel_err(out, ref):
    """||out - ref|| / ||ref|| in float64 on the CPU (||out|| when ref is all zeros)."""
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    assert out.shape == ref.shape, (out.shape, ref.shape)
    denom = ref.norm().item()
    num = (out - ref).norm().item()
    return num / denom if denom > 0 else num


def make_problem(
    N=2, C=4, O=6, H=9, W=8, k=(3, 3), groups=1, dtype=torch.float64, device="cpu",
    kernel_bias=True, bias=True, seed=0, scale=0.5,
):
    """Random inputs in float64, cast to dtype (so every dtype sees the same values)."""
    gen = torch.Generator().manual_seed(seed)
    kH, kW = k
    x = torch.randn(N, C, H, W, generator=gen, dtype=torch.float64)
    # scale keeps sigma in tanh's interesting range rather than saturated
    w = torch.randn(O, C // groups, kH, kW, kH, kW, generator=gen, dtype=torch.float64) * scale / (kH * kW) ** 0.5
    kb = torch.randn(O, C // groups, kH, kW, generator=gen, dtype=torch.float64) * 0.5 if kernel_bias else None
    b = torch.randn(O, generator=gen, dtype=torch.float64) if bias else None
    cast = lambda t: None if t is None else t.to(dtype=dtype, device=device)  # noqa: E731
    return cast(x), cast(w), cast(kb), cast(b)


def cuda_native_available():
    import adaptive_conv_ext

    return torch.cuda.is_available() and adaptive_conv_ext.available_backends("cuda")["native"] is None


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def one_thread_restoring_torch_globals():
    """For the examples' tests: one torch thread (their models are tiny: a second thread
    only adds synchronisation, 10x slower on a busy 2-core machine, and one thread fixes
    the order of every float reduction). The examples seed torch's global RNG and turn on
    deterministic algorithms; both are restored afterwards, so that other test files in
    the same session do not inherit them."""
    threads = torch.get_num_threads()
    rng = torch.random.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.random.set_rng_state(rng)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
