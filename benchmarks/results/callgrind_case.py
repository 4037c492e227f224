# callgrind driver: one forward and one backward of a small mid-64-like case (float32)
import sys, torch
torch.set_num_threads(1)
import adaptive_conv_ext as ace
g = torch.Generator().manual_seed(0)
N, C, O, H, k = 1, 16, 16, 28, 3
x = torch.randn(N, C, H, H, generator=g)
w = torch.randn(O, C, k, k, k, k, generator=g) / k
kb = torch.randn(O, C, k, k, generator=g) * 0.1
ops = torch.ops.adaptive_conv_ext
y = ops.adaptive_conv2d_forward(x, w, kb, None, [1, 1], [1, 1], [1, 1], 1)
gy = torch.randn_like(y)
gx, gw, gkb = ops.adaptive_conv2d_backward(gy, x, w, kb, [1, 1], [1, 1], [1, 1], 1, [True, True])
print(torch.backends.cpu.get_cpu_capability(), float(y.sum()), float(gw.sum()))
