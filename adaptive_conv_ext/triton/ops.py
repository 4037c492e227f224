"""The Triton backend's operators: ``forward`` and ``backward``.

They have the semantics of the native ``adaptive_conv_ext::adaptive_conv2d_forward``
and ``adaptive_conv2d_backward`` (csrc/ops/adaptive_conv2d.cpp) and are registered as
the custom ops ``adaptive_conv_ext::triton_forward`` / ``triton_backward`` (through
``torch.library.triton_op`` on a GPU, so that torch.compile sees the kernels; through
``torch.library.custom_op`` under the Triton interpreter), each with a fake kernel.

Dtypes: float32, float16 and bfloat16, always accumulated in float32; float64 raises
a TypeError (use backend="native" or "reference").

Numerics switches (module attributes, read at every call; initialised from the
environment when the module is imported):

``allow_tf32`` (env ``ADAPTIVE_CONV_TRITON_TF32=1``)
    Let float32 matrix products use TF32 tensor cores. Default off: float32 products
    are exact IEEE ("ieee" input precision) and results meet SPEC's 1e-6. With TF32
    expect SPEC's "TF32" tolerance, 1e-3.
``fast_tanh`` (env ``ADAPTIVE_CONV_TRITON_FAST_TANH``: ``auto`` | ``1`` | ``0``)
    ``auto`` (default): for float16/bfloat16 the packed hardware tanh of the dtype,
    ``tanh.approx.f16x2`` (sm_75+) / ``tanh.approx.bf16x2`` (sm_90+; ``tanh.approx.f32``
    on older GPUs), two values per instruction (the bfloat16 backward uses
    ``tanh.approx.f32``: its 1 - t^2 needs more than 8 bits); an exact tanh for float32. ``1``:
    ``tanh.approx.f32`` in the float32 forward too (tolerance 1e-3; the float32 backward
    keeps the exact tanh, since the approximation's error, up to 2^-11 relative, reaches
    ~1.3e-3 in the gradients in the worst case); ``0``: exact tanh everywhere. Under the
    interpreter the 16-bit forms are emulated (exact tanh rounded to 16 bits); see
    ``tanh_form``, the one place where the form is chosen.
``autotune`` (env ``ADAPTIVE_CONV_TRITON_AUTOTUNE=1``)
    Autotune the tile configuration among the non-spilling candidates of ``_TUNE``
    instead of the pinned configuration of ``_FIXED`` (default off: pinned).
``force_mode`` (None, ``"o"`` or ``"uv"``)
    Pick the kernel tiling (see kernels.py) instead of the heuristic; for tests.

Determinism: grad_weight and grad_kernel_bias are always reduced without atomics, over
chunks of a fixed number of pixels (``_gw_chunk``) with float64 partial sums, summed in
a fixed order. grad_input uses float32 atomics, unless
``torch.are_deterministic_algorithms_enabled()``, when it is computed as per-pixel patch
gradients gathered by a col2im kernel in a fixed order, and every kernel runs with its
pinned configuration (the weight-gradient tile is then the chunk itself, so the bits of
grad_weight depend on no tuning choice).

Launches: CUDA kernels run under ``torch.cuda.device(input.device)``; every tensor
must be on the input's device. Grids are one-dimensional and split by images so that
no launch exceeds 2^31 - 1 programs; offsets are 64-bit when a tensor reaches 2^30
elements (``_index64``).
"""

import contextlib
import os
from typing import List, Optional, Tuple

import torch
import triton
from torch import Tensor

from .._native import backward_fake
from .._validation import out_size
from . import kernels as K

INTERPRET: bool = K.INTERPRET

allow_tf32: bool = os.environ.get("ADAPTIVE_CONV_TRITON_TF32", "0") == "1"
fast_tanh: str = os.environ.get("ADAPTIVE_CONV_TRITON_FAST_TANH", "auto")
autotune: bool = os.environ.get("ADAPTIVE_CONV_TRITON_AUTOTUNE", "0") == "1"
force_mode: Optional[str] = None

# Bound on the float32 column buffer of the deterministic grad_input path (images are
# processed in chunks that fit) and on the grad_weight split workspace.
workspace_bytes: int = 256 << 20

_SUPPORTED = (torch.float32, torch.float16, torch.bfloat16)
_GRID_X_MAX = 2**31 - 1  # every launch is one-dimensional
# Offsets switch to int64 at 2^30 elements: below that, every offset a kernel forms
# (masked-off padding taps and channel-tile overhang included) stays under 2^31.
_INDEX64_AT = 2**30


# --------------------------------------------------------------------------- configs


def _cfg(bp, bo=None, warps=4, stages=2):
    kw = {"BLOCK_P": bp}
    if bo is not None:
        kw["BLOCK_O"] = bo
    return triton.Config(kw, num_warps=warps, num_stages=stages)


# Autotuned on a GPU, per bucket of padded tap count TP (16, 32, >= 64): the float32
# "ieee" dot unrolls into FMAs whose register need grows with TP, so large TP needs
# smaller tiles or more warps (configs that spilled in sm_90 builds are left out).
# Channel-mode tiles are pixels x output channels; tap-mode tiles are pixels only (the
# other dot dimension is TP).
_TUNE = {
    "fwd_o": (
        [_cfg(64, 16), _cfg(64, 64), _cfg(128, 16), _cfg(128, 32, 8), _cfg(128, 64, 8)],
        [_cfg(32, 16), _cfg(32, 32), _cfg(64, 16), _cfg(64, 32), _cfg(128, 16), _cfg(128, 32, 8),
         _cfg(32, 64, 8)],
        [_cfg(32, 16), _cfg(32, 32), _cfg(64, 16), _cfg(64, 32, 8), _cfg(128, 32, 8), _cfg(32, 64, 8)],
    ),
    "fwd_uv": (
        [_cfg(32), _cfg(64), _cfg(128), _cfg(128, warps=8), _cfg(256, warps=8)],
        [_cfg(16), _cfg(32), _cfg(64), _cfg(32, warps=8), _cfg(128, warps=8)],
        [_cfg(16), _cfg(32), _cfg(32, warps=8), _cfg(64, warps=8)],
    ),
    "gin_o": (
        [_cfg(32, 16), _cfg(32, 32), _cfg(64, 16), _cfg(64, 32), _cfg(64, 64, 8), _cfg(128, 32, 8)],
        [_cfg(16, 32), _cfg(32, 16), _cfg(32, 32), _cfg(32, 16, 8), _cfg(64, 16)],
        [_cfg(16, 16), _cfg(16, 32)],
    ),
    "gin_uv": (
        [_cfg(32), _cfg(64), _cfg(128, warps=8)],
        [_cfg(16), _cfg(32), _cfg(32, warps=8)],
        [_cfg(16), _cfg(16, warps=8), _cfg(32, warps=8)],
    ),
    "gw_o": (
        [_cfg(32, 32), _cfg(64, 16), _cfg(64, 32), _cfg(64, 64, 8)],
        [_cfg(16, 32), _cfg(32, 16), _cfg(32, 16, 8), _cfg(32, 32, 8)],
        [_cfg(16, 16)],
    ),
    "gw_uv": (
        [_cfg(32), _cfg(64), _cfg(128, warps=8)],
        [_cfg(32), _cfg(64), _cfg(32, warps=8), _cfg(64, warps=8), _cfg(128, warps=8)],
        [_cfg(16), _cfg(32, warps=8), _cfg(64, warps=8)],
    ),
}
# Pinned per bucket (the SPEC shapes: resnet-stem, mid-64, depthwise-256 in bucket 0,
# lenet-mnist in 1, depthwise-k7 in 2), always used in deterministic mode and unless
# `autotune` is on. None of these spills (ptxas stack frame 0) in sm_80 and sm_90 builds
# for float32 and bfloat16 (tests/test_triton.py checks them in CI), nor did the _TUNE
# candidates in use in sm_90 builds.
_FIXED = {
    "fwd_o": (_cfg(64, 16, 8), _cfg(64, 32), _cfg(64, 32, 8)),
    "fwd_uv": (_cfg(64), _cfg(64), _cfg(32, warps=8)),
    "gin_o": (_cfg(64, 16, 8), _cfg(32, 16, 8), _cfg(16, 16)),
    "gin_uv": (_cfg(64), _cfg(32, warps=8), _cfg(32, warps=8)),
    "gw_o": (_cfg(32, 32), _cfg(32, 16, 8), _cfg(16, 16)),
    "gw_uv": (_cfg(64), _cfg(32, warps=8), _cfg(32, warps=8)),
    "col2im": (triton.Config({"BLOCK": 512}, num_warps=4),) * 3,
}
# The interpreter runs every program in Python: small tiles, no autotuning.
_INTERP = {
    "fwd_o": _cfg(16, 16), "fwd_uv": _cfg(16), "gin_o": _cfg(16, 16), "gin_uv": _cfg(16),
    "gw_o": _cfg(16, 16), "gw_uv": _cfg(16), "col2im": triton.Config({"BLOCK": 64}),
}
# Pixels per float32 partial sum of the weight gradients (see kernels.py). On a GPU the
# pinned tile of the deterministic path; the interpreter takes larger chunks (its cost
# is per tile, not per element) and smaller fast-path tiles, so both loops are tested.
_INTERP_CHUNK = 256
_RAW = {
    "fwd_o": K.fwd_o_kernel, "fwd_uv": K.fwd_uv_kernel, "gin_o": K.gin_o_kernel,
    "gin_uv": K.gin_uv_kernel, "gw_o": K.gw_o_kernel, "gw_uv": K.gw_uv_kernel,
    "col2im": K.col2im_kernel,
}
_SHAPE_KEY = ["C", "H", "W", "O", "Ho", "Wo", "Cg", "Og", "KH", "KW"]
_KEYS = {
    "fwd_o": _SHAPE_KEY, "fwd_uv": _SHAPE_KEY, "gin_o": _SHAPE_KEY, "gin_uv": _SHAPE_KEY,
    "gw_o": _SHAPE_KEY + ["N", "S"], "gw_uv": _SHAPE_KEY + ["N", "S"],
}


def _bucket(TP: int) -> int:
    return 0 if TP <= 16 else (1 if TP <= 32 else 2)


def _gw_chunk(name: str, bucket: int) -> int:
    return _INTERP_CHUNK if INTERPRET else _FIXED[name][bucket].kwargs["BLOCK_P"]


def _tune_configs(name: str, bucket: int):
    """Autotune candidates; weight-gradient tiles must divide the chunk."""
    configs = _TUNE[name][bucket]
    if name.startswith("gw"):
        configs = [c for c in configs if c.kwargs["BLOCK_P"] <= _gw_chunk(name, bucket)]
    return configs


_TUNED = {}
if not INTERPRET:
    for _name, _buckets in _TUNE.items():
        # The atomic grad_input kernels accumulate into dx: zero it between trials.
        _reset = ["dx_ptr"] if _name.startswith("gin") else None
        for _b in range(len(_buckets)):
            _TUNED[_name, _b] = triton.autotune(configs=_tune_configs(_name, _b), key=_KEYS[_name],
                                                reset_to_zero=_reset)(_RAW[_name])


def _pinned(name: str, bucket: int, deterministic: bool) -> triton.Config:
    cfg = _INTERP[name] if INTERPRET else _FIXED[name][bucket]
    if deterministic and name.startswith("gw"):
        # One tile per chunk: the float32 partial sums are then fixed by the chunk alone.
        cfg = triton.Config(dict(cfg.kwargs, BLOCK_P=_gw_chunk(name, bucket)),
                            num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return cfg


def _launch(name, grid, args, consts, deterministic):
    """Run kernel `name` on grid(meta) = (programs,): autotuned when `autotune` is on
    (never in deterministic mode or under the interpreter), else its pinned config."""
    wrap = torch.library.wrap_triton
    bucket = _bucket(consts.get("TP", 16))
    if autotune and not INTERPRET and not deterministic and (name, bucket) in _TUNED:
        wrap(_TUNED[name, bucket])[grid](*args, **consts)
        return
    cfg = _pinned(name, bucket, deterministic)
    meta = dict(consts)
    meta.update(cfg.kwargs)
    wrap(_RAW[name])[grid(meta)](*args, **meta, num_warps=cfg.num_warps, num_stages=cfg.num_stages)


# --------------------------------------------------------------------------- helpers


def _taps_padded(T: int) -> int:
    """TP: the T taps and the ones column (beta), padded to a power of two >= 16."""
    return max(16, triton.next_power_of_2(T + 1))


def use_tap_mode(Og: int, T: int) -> bool:
    """Tap mode when it wastes fewer tanh evaluations than padding Og to 16 would."""
    if force_mode is not None:
        if force_mode not in ("o", "uv"):
            raise ValueError(f"force_mode must be None, 'o' or 'uv', got {force_mode!r}")
        return force_mode == "uv"
    tap_waste = _taps_padded(T) / T
    channel_waste = triton.cdiv(Og, 16) * 16 / Og
    return tap_waste < channel_waste


def _check(input: Tensor, what: str, **others: Optional[Tensor]) -> None:
    """dtype and device of `input`; every tensor of `others` must share its device."""
    if input.dtype == torch.float64:
        raise TypeError(
            f"adaptive_conv2d {what}: the Triton backend does not support float64; "
            "use backend='native' or backend='reference' for float64 tensors"
        )
    if input.dtype not in _SUPPORTED:
        raise TypeError(f"adaptive_conv2d {what}: the Triton backend supports float32, float16 and "
                        f"bfloat16, got {input.dtype}")
    for name, t in others.items():
        if t is not None and t.device != input.device:
            raise RuntimeError(f"adaptive_conv2d {what} (triton): {name} is on {t.device} but input is on "
                               f"{input.device}; all tensors must be on one device")
    dev = input.device.type
    if dev == "cuda" or (dev == "cpu" and INTERPRET) or dev == "meta":
        return
    if dev == "cpu":
        raise RuntimeError(
            "adaptive_conv2d: the Triton kernels run on CUDA tensors, and on CPU tensors only "
            "under the Triton interpreter: set TRITON_INTERPRET=1 before anything imports triton "
            "(the kernels of this process were built for the GPU)"
        )
    raise RuntimeError(f"adaptive_conv2d: the Triton backend has no support for {dev} tensors")


def _on_device(device: torch.device):
    """Launch on the tensors' GPU, not the current one."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _geometry(input, weight, stride, padding, dilation, groups):
    N, C, H, W = input.shape
    O, Cg, KH, KW = weight.shape[:4]
    Ho, Wo = out_size((H, W), (KH, KW), stride, padding, dilation)
    return N, C, H, W, O, Cg, O // groups, KH, KW, Ho, Wo


def _index64(*numels: int) -> bool:
    """Whether offsets must be 64-bit for tensors (or buffers) of these sizes."""
    return max(numels, default=0) >= _INDEX64_AT


def _image_launches(N: int, programs_per_image: int, max_images: Optional[int] = None):
    """(n0, images) of the launches covering N images, each within the grid limit (and
    max_images). programs_per_image must count the smallest tiles any config may use."""
    if programs_per_image > _GRID_X_MAX:
        raise ValueError(f"adaptive_conv2d (triton): one image needs {programs_per_image} programs, "
                         f"more than a launch may have ({_GRID_X_MAX})")
    step = max(1, _GRID_X_MAX // max(1, programs_per_image))
    if max_images is not None:
        step = min(step, max_images)
    return [(n0, min(step, N - n0)) for n0 in range(0, N, step)]


def _min_tile(name: str, key: str) -> int:
    """The smallest value of tile parameter `key` among every config of kernel `name`."""
    configs = [_INTERP[name]] + list(_FIXED[name]) + [c for b in _TUNE[name] for c in b]
    return min(c.kwargs[key] for c in configs)


def _capability(device: torch.device):
    if INTERPRET or device.type != "cuda":
        return None
    return torch.cuda.get_device_capability(device)


def _numerics(dtype: torch.dtype, device: torch.device, backward: bool = False):
    """(LOW_DOT, PREC, PREC_B, TANH) for a dtype under the current switches."""
    low = dtype in (torch.float16, torch.bfloat16)
    cc = _capability(device)
    nvidia = cc is not None and torch.version.hip is None
    if low:
        # sigma = [X, 1] [Q, beta]^T takes 16-bit operands exactly; products with the
        # float32 dsigma go through TF32 (fp32 range, a 16-bit-like mantissa: within
        # 16-bit tolerances). The interpreter gets float32 operands (its bfloat16 dot is
        # wrong), and so do GPUs without bfloat16 tensor cores.
        low_dot = cc is not None and (dtype == torch.float16 or cc >= (8, 0))
        prec = prec_b = "tf32"
    else:
        low_dot = False
        prec = prec_b = "tf32" if allow_tf32 else "ieee"
    return low_dot, prec, prec_b, tanh_form(dtype, cc if nvidia else None, backward)


def tanh_form(dtype: torch.dtype, cc: Optional[Tuple[int, int]], backward: bool = False) -> int:
    """The tanh of the kernels (kernels.TANH_*) for a dtype on an NVIDIA GPU of compute
    capability cc (None: the interpreter, or a GPU without these instructions)."""
    mode = str(fast_tanh)
    if dtype in (torch.float16, torch.bfloat16) and mode != "0":
        # The bfloat16 backward keeps float32 tanh: 1 - t^2 from a bfloat16 t (8-bit
        # mantissa) raised the emulated gradient errors from 1.5e-3 to 1e-2, too close to
        # bfloat16's 2e-2 for hardware whose error bound (2^-8) is twice the rounding's.
        packed = K.TANH_F16X2 if dtype == torch.float16 else K.TANH_BF16X2
        use_packed = not (backward and dtype == torch.bfloat16)
        if INTERPRET:
            return int(packed if use_packed else K.TANH_EXACT)  # emulated: 16-bit rounding, no PTX
        if use_packed and cc is not None and cc >= ((7, 5) if dtype == torch.float16 else (9, 0)):
            return int(packed)
        if cc is not None and cc >= (7, 5):
            return int(K.TANH_F32)
    elif dtype == torch.float32 and mode == "1" and not backward and cc is not None and cc >= (7, 5):
        return int(K.TANH_F32)  # tanh.approx.f32 is PTX for sm_75 and newer
    return int(K.TANH_EXACT)


def _split_count(blocks: int, items: int, per_split_bytes: int, device: torch.device) -> int:
    """How many ways to split the grad_weight reduction: enough programs to fill the GPU,
    within the workspace budget. Depends only on the shape and the device."""
    if INTERPRET:
        return max(1, min(2, items))  # exercise the split path cheaply
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    want = triton.cdiv(4 * sms, max(1, blocks))
    cap = max(1, workspace_bytes // max(1, per_split_bytes))
    return int(max(1, min(want, items, cap, _GRID_X_MAX // max(1, blocks))))


# --------------------------------------------------------------------------- operators


def _forward(
    input: Tensor,
    weight: Tensor,
    kernel_bias: Optional[Tensor],
    bias: Optional[Tensor],
    stride: List[int],
    padding: List[int],
    dilation: List[int],
    groups: int,
) -> Tensor:
    _check(input, "forward", weight=weight, kernel_bias=kernel_bias, bias=bias)
    N, C, H, W, O, Cg, Og, KH, KW, Ho, Wo = _geometry(input, weight, stride, padding, dilation, groups)
    y = torch.empty((N, O, Ho, Wo), dtype=input.dtype, device=input.device)
    if y.numel() == 0:
        return y
    x = input.contiguous()
    w = weight.contiguous()
    kb = kernel_bias.contiguous() if kernel_bias is not None else w  # dummy pointer when absent
    b = bias.contiguous() if bias is not None else w
    T, L = KH * KW, Ho * Wo
    low_dot, prec, _, tanh = _numerics(input.dtype, input.device)
    consts = dict(KH=KH, KW=KW, TP=_taps_padded(T), HAS_KB=kernel_bias is not None,
                  HAS_BIAS=bias is not None, LOW_DOT=low_dot, PREC=prec, TANH=tanh,
                  IDX64=_index64(x.numel(), y.numel(), w.numel()))
    deterministic = torch.are_deterministic_algorithms_enabled()
    tap_mode = use_tap_mode(Og, T)
    name = "fwd_uv" if tap_mode else "fwd_o"
    if tap_mode:
        blocks = lambda m: O  # noqa: E731
        worst = triton.cdiv(L, _min_tile(name, "BLOCK_P")) * O
    else:
        blocks = lambda m: groups * triton.cdiv(Og, m["BLOCK_O"])  # noqa: E731
        worst = triton.cdiv(L, _min_tile(name, "BLOCK_P")) * groups * triton.cdiv(Og, _min_tile(name, "BLOCK_O"))
    with _on_device(x.device):
        for n0, nb in _image_launches(N, worst):
            args = [x, w, kb, b, y, n0, nb, C, H, W, O, Ho, Wo, Cg, Og, stride[0], stride[1], padding[0],
                    padding[1], dilation[0], dilation[1]]
            _launch(name, lambda m, nb=nb: (nb * triton.cdiv(L, m["BLOCK_P"]) * blocks(m),), args, consts,
                    deterministic)
    return y


def _backward(
    grad_output: Tensor,
    input: Tensor,
    weight: Tensor,
    kernel_bias: Optional[Tensor],
    stride: List[int],
    padding: List[int],
    dilation: List[int],
    groups: int,
    output_mask: List[bool],
) -> Tuple[Tensor, Tensor, Tensor]:
    _check(input, "backward", grad_output=grad_output, weight=weight, kernel_bias=kernel_bias)
    N, C, H, W, O, Cg, Og, KH, KW, Ho, Wo = _geometry(input, weight, stride, padding, dilation, groups)
    dtype, device = input.dtype, input.device
    T, L = KH * KW, Ho * Wo
    go = grad_output.contiguous()
    x = input.contiguous()
    w = weight.contiguous()
    kb = kernel_bias.contiguous() if kernel_bias is not None else w
    low_dot, prec, prec_b, tanh = _numerics(dtype, device, backward=True)
    consts = dict(KH=KH, KW=KW, TP=_taps_padded(T), HAS_KB=kernel_bias is not None,
                  LOW_DOT=low_dot, PREC=prec, PREC_B=prec_b, TANH=tanh)
    numels = (x.numel(), go.numel(), w.numel())
    conv = [stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1]]
    deterministic = torch.are_deterministic_algorithms_enabled()
    tap_mode = use_tap_mode(Og, T)
    # Masked-off gradients: distinct empty tensors (custom-op outputs may not alias).
    grad_input = input.new_empty((0,))
    grad_weight, grad_kernel_bias = weight.new_empty((0,)), weight.new_empty((0,))
    with _on_device(device):
        if output_mask[0]:
            if x.numel() == 0 or O == 0:
                grad_input = torch.zeros(x.shape, dtype=dtype, device=device)
            else:
                grad_input = _grad_input(go, x, w, kb, consts, numels, conv, tap_mode, deterministic,
                                         N, C, H, W, O, Cg, Og, KH, KW, Ho, Wo)
        if output_mask[1]:
            if N * L == 0 or w.numel() == 0:
                grad_weight = torch.zeros(w.shape, dtype=dtype, device=device)
                grad_kernel_bias = torch.zeros((O, Cg, KH, KW), dtype=dtype, device=device)
            else:
                grad_weight, grad_kernel_bias = _grad_weight(go, x, w, kb, consts, numels, conv, tap_mode,
                                                             deterministic, N, C, H, W, O, Cg, Og, KH, KW,
                                                             Ho, Wo)
    return grad_input, grad_weight, grad_kernel_bias


def _grad_weight(go, x, w, kb, consts, numels, conv, tap_mode, deterministic,
                 N, C, H, W, O, Cg, Og, KH, KW, Ho, Wo):
    T, L = KH * KW, Ho * Wo
    name = "gw_uv" if tap_mode else "gw_o"
    chunk = _gw_chunk(name, _bucket(consts["TP"]))
    blocks = O * Cg if tap_mode else O * Cg * T // 16
    slot = O * Cg * T * (T + 1)  # [dQ, dbeta] of one split, float64
    S = _split_count(blocks, N * triton.cdiv(L, chunk), slot * 8, x.device)
    ws = torch.empty((S, O, Cg, T, T + 1), dtype=torch.float64, device=x.device)
    consts = dict(consts, CHUNK=chunk, IDX64=_index64(*numels, ws.numel()))
    args = [go, x, w, kb, ws, N, C, H, W, O, Ho, Wo, Cg, Og, S] + conv
    if tap_mode:
        _launch(name, lambda m: (O * Cg * S,), args, consts, deterministic)
    else:
        _launch(name, lambda m: ((O // Og) * triton.cdiv(Og, m["BLOCK_O"]) * Cg * T * S,), args, consts,
                deterministic)
    total = ws.sum(0)  # fixed-order reduction of the S partial sums, in float64
    return total[..., :T].to(x.dtype).reshape(w.shape), total[..., T].to(x.dtype).reshape(O, Cg, KH, KW)


def _grad_input(go, x, w, kb, consts, numels, conv, tap_mode, deterministic,
                N, C, H, W, O, Cg, Og, KH, KW, Ho, Wo):
    T, L = KH * KW, Ho * Wo
    name = "gin_uv" if tap_mode else "gin_o"
    consts = dict(consts, DETERMINISTIC=deterministic)
    worst = triton.cdiv(L, _min_tile(name, "BLOCK_P")) * C
    grid = lambda nb: (lambda m: (nb * triton.cdiv(L, m["BLOCK_P"]) * C,))  # noqa: E731
    if not deterministic:
        dx = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        consts["IDX64"] = _index64(*numels)
        for n0, nb in _image_launches(N, worst):
            args = [go, x, w, kb, dx, dx, n0, nb, C, H, W, O, Ho, Wo, Cg, Og] + conv
            _launch(name, grid(nb), args, consts, False)
        return dx if x.dtype == torch.float32 else dx.to(x.dtype)
    # Deterministic: patch gradients into a column buffer, then a gathering col2im, a
    # chunk of images at a time to bound the buffer.
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    per_image = C * T * L * 4
    chunk = int(max(1, min(N, workspace_bytes // max(1, per_image))))
    cols = torch.empty((chunk, C, T, L), dtype=torch.float32, device=x.device)
    consts["IDX64"] = _index64(*numels, cols.numel())
    c2i_block = _pinned("col2im", 0, True).kwargs["BLOCK"]
    c2i_worst = C * triton.cdiv(H * W, c2i_block)
    for n0, nb in _image_launches(N, max(worst, c2i_worst), max_images=chunk):
        args = [go, x, w, kb, dx, cols, n0, nb, C, H, W, O, Ho, Wo, Cg, Og] + conv
        _launch(name, grid(nb), args, consts, True)
        _launch("col2im", lambda m, nb=nb: (nb * C * triton.cdiv(H * W, m["BLOCK"]),),
                [cols, dx, n0, nb, C, H, W, Ho, Wo] + conv,
                dict(KH=KH, KW=KW, IDX64=consts["IDX64"]), True)
    return dx


# --------------------------------------------------------------------------- registration

_register = torch.library.custom_op if INTERPRET else torch.library.triton_op
# Under the interpreter the op stays opaque to torch.compile (the interpreted kernels
# cannot run on fake or functional tensors); on a GPU triton_op lets it see the kernels.

_forward_op = _register("adaptive_conv_ext::triton_forward", mutates_args=())(_forward)
_backward_op = _register("adaptive_conv_ext::triton_backward", mutates_args=())(_backward)


@_forward_op.register_fake
def _forward_fake(input, weight, kernel_bias, bias, stride, padding, dilation, groups):
    _check(input, "forward", weight=weight, kernel_bias=kernel_bias, bias=bias)
    N, C, H, W, O, Cg, Og, KH, KW, Ho, Wo = _geometry(input, weight, stride, padding, dilation, groups)
    return input.new_empty((N, O, Ho, Wo))


@_backward_op.register_fake
def _backward_fake(grad_output, input, weight, kernel_bias, stride, padding, dilation, groups, output_mask):
    _check(input, "backward", grad_output=grad_output, weight=weight, kernel_bias=kernel_bias)
    return backward_fake(input, weight, output_mask)


forward = torch.ops.adaptive_conv_ext.triton_forward.default
backward = torch.ops.adaptive_conv_ext.triton_backward.default

__all__ = ["forward", "backward", "allow_tf32", "fast_tanh", "autotune", "force_mode", "use_tap_mode", "INTERPRET"]
