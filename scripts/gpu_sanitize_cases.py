"""Small forward+backward cases for compute-sanitizer (scripts/gpu_session.sh): every
dtype, the static and generic kernels, atomics and the deterministic workspaces,
stride, dilation and groups. Seconds on a GPU; the sanitizer's slowdown is the cost."""

import torch

from adaptive_conv_ext import adaptive_conv2d


def case(N, C, O, H, W, k, dtype, deterministic, **kw):
    torch.use_deterministic_algorithms(deterministic)
    g = torch.Generator().manual_seed(0)
    cg, taps = C // kw.get("groups", 1), k[0] * k[1]
    x = torch.randn(N, C, H, W, generator=g).to("cuda", dtype).requires_grad_()
    w = (torch.randn(O, cg, *k, *k, generator=g) / taps**0.5).to("cuda", dtype).requires_grad_()
    kb = torch.randn(O, cg, *k, generator=g).to("cuda", dtype).requires_grad_()
    b = torch.randn(O, generator=g).to("cuda", dtype).requires_grad_()
    y = adaptive_conv2d(x, w, kb, b, backend="native", **kw)
    y.backward(torch.randn(y.shape, generator=g).to("cuda", dtype))
    torch.cuda.synchronize()
    assert all(torch.isfinite(t.grad).all() for t in (x, w, kb, b)), f"non-finite gradient: {dtype} {kw}"
    print(f"ok  {dtype} N={N} C={C} O={O} {H}x{W} k={k} deterministic={deterministic} {kw}", flush=True)


case(2, 3, 4, 20, 37, (3, 3), torch.float32, False, padding=1)
case(2, 3, 4, 20, 37, (3, 3), torch.float32, True, padding=1)
case(1, 2, 4, 13, 11, (2, 3), torch.float64, True, stride=(1, 2), padding=(0, 1))
case(1, 4, 4, 18, 18, (7, 7), torch.bfloat16, False, padding=3, groups=4)
case(1, 2, 2, 9, 9, (5, 5), torch.float16, False, padding=2, dilation=2)
print("sanitizer cases done")
