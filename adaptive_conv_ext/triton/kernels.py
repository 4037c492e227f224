"""Triton kernels of the adaptive convolution (SPEC section 1).

Notation: T = kH*kW taps, TP = T + 1 padded to a power of two >= 16 (tl.dot needs
each dimension >= 16), P = a tile of output pixels of one image, Og/Cg = output /
input channels per group. Weights are viewed as Q[o, c, uv, ab] (O, Cg, T, T),
kernel biases as beta[o, c, uv] (O, Cg, T). All tensors are contiguous.

sigma = [X, 1] [Q, beta]^T is one tl.dot with float32 accumulation: the patch tile
gets a column of ones at tap index T and the weight tile gets beta as row T (the
"bias column"). The same column turns the weight-gradient product X^T dsigma into
[dQ, dbeta] in one dot. Two tilings of that product:

* channel mode ("_o" kernels): one tl.dot per kernel element uv,
  patch (P x TP taps ab) @ weights (TP x BLOCK_O output channels). No tanh is
  wasted when Og is a multiple of 16.
* tap mode ("_uv" kernels): one output channel at a time, one tl.dot for all
  kernel elements, patch (P x TP taps ab) @ Q[o, c]^T (TP x TP kernel elements
  uv). The result's columns line up with the patch's own columns, so
  K*X is an elementwise product. Used when Og is small (depthwise): channel mode
  would pad Og up to 16 and evaluate up to 16x more tanh than needed.

sigma and K live in registers only; the backward kernels recompute them.

Every kernel runs on a one-dimensional grid (the only dimension whose limit, 2^31 - 1,
no launch reaches: ops.py splits launches by images); the program index is decoded in
the order a two-dimensional grid would have had, pixel tiles fastest. IDX64 makes
offsets 64-bit; ops.py sets it when a tensor is large enough for int32 to overflow.
"""

import triton
import triton.language as tl
from triton import knobs

# Decided when this module is imported, exactly as @triton.jit decides it.
INTERPRET = bool(knobs.runtime.interpret)
_INTERPRETING = tl.constexpr(INTERPRET)

# tanh implementations (constexpr TANH of every kernel; ops._numerics chooses).
TANH_EXACT = tl.constexpr(0)  # float32, about 1e-7, no libdevice (the interpreter has none)
TANH_F32 = tl.constexpr(1)  # tanh.approx.f32 (sm_75+), max rel. error ~2^-11
TANH_F16X2 = tl.constexpr(2)  # tanh.approx.f16x2 (sm_75+), two float16 per instruction
TANH_BF16X2 = tl.constexpr(3)  # tanh.approx.bf16x2 (sm_90+), two bfloat16 per instruction

# Helpers called from the kernels. The interpreter re-patches triton.language on every
# call of a jitted helper (milliseconds each), so there they are plain Python functions,
# which it runs the same way inline.
_device_fn = (lambda fn: fn) if INTERPRET else triton.jit


@_device_fn
def _tanh_exact(x):
    """(tanh(x), r, is_small) in float32, accurate to about 1e-7 without libdevice:
    |x| >= 1/8 uses 1 - 2r with r = 1 / (exp(2|x|) + 1), which saturates cleanly to
    +-1; |x| < 1/8 uses the Taylor polynomial to x^7 (remainder < 4e-9 relative), which
    keeps small values accurate relative to themselves. NaN propagates through both."""
    ax = tl.abs(x)
    r = 1.0 / (tl.exp2(ax * 2.8853900817779268) + 1.0)  # exp2(|x| * 2/ln 2) = exp(2|x|)
    big = 1.0 - 2.0 * r
    x2 = x * x
    small = x + x * x2 * ((-0.053968253968253971 * x2 + 0.13333333333333333) * x2 - 0.33333333333333333)
    is_small = ax < 0.125
    t = tl.where(is_small, small, tl.where(x < 0, -big, big))
    return t, r, is_small


@_device_fn
def _tanh_approx(x, TANH: tl.constexpr):
    """The hardware tanh of TANH (float32 in, float32 out). The 16-bit forms round x
    to 16 bits and evaluate two values per instruction (pack=2). Under the interpreter
    (no PTX) the 16-bit forms are emulated: exact tanh of the rounded x, rounded to 16
    bits, so tests see the same quantisation."""
    if TANH == TANH_F32:
        t = tl.inline_asm_elementwise(
            "tanh.approx.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        if TANH == TANH_F16X2:
            x16 = x.to(tl.float16)
        else:
            x16 = x.to(tl.bfloat16)
        if _INTERPRETING:
            t16, _r, _s = _tanh_exact(x16.to(tl.float32))
            t = t16.to(x16.dtype).to(tl.float32)
        elif TANH == TANH_F16X2:
            t = tl.inline_asm_elementwise(
                "tanh.approx.f16x2 $0, $1;", "=r,r", [x16], dtype=tl.float16, is_pure=True, pack=2
            ).to(tl.float32)
        else:
            t = tl.inline_asm_elementwise(
                "tanh.approx.bf16x2 $0, $1;", "=r,r", [x16], dtype=tl.bfloat16, is_pure=True, pack=2
            ).to(tl.float32)
    return t


@_device_fn
def _tanh(x, TANH: tl.constexpr):
    if TANH == TANH_EXACT:
        t, _r, _s = _tanh_exact(x)
    else:
        t = _tanh_approx(x, TANH)
    return t


@_device_fn
def _tanh_d(x, TANH: tl.constexpr):
    """(tanh(x), 1 - tanh(x)^2). Exact: 1 - t^2 = 4 r (1 - r) for |x| >= 1/8, free of
    the cancellation of 1 - t*t near |t| = 1."""
    if TANH == TANH_EXACT:
        t, r, is_small = _tanh_exact(x)
        dt = tl.where(is_small, (1.0 - t) * (1.0 + t), 4.0 * r * (1.0 - r))
    else:
        t = _tanh_approx(x, TANH)
        dt = (1.0 - t) * (1.0 + t)
    return t, dt


@_device_fn
def _wide(v, IDX64: tl.constexpr):
    """v as the offset type: int64 when IDX64, else unchanged (int32)."""
    if IDX64:
        v = v.to(tl.int64)
    return v


@_device_fn
def _origin(offs_p, Wo, sH, sW, pH, pW):
    """Input row and column of tap (0, 0) of each output pixel of the tile."""
    oi = offs_p // Wo
    oj = offs_p % Wo
    return oi * sH - pH, oj * sW - pW


@_device_fn
def _patch(hb, wb, pmask, taps, H, W, dH, dW, KW: tl.constexpr, T: tl.constexpr):
    """Offsets (within one input plane) and mask of the (P x TP) patch tile."""
    h = hb[:, None] + (taps // KW)[None, :] * dH
    w = wb[:, None] + (taps % KW)[None, :] * dW
    mask = pmask[:, None] & (taps < T)[None, :] & (h >= 0) & (h < H) & (w >= 0) & (w < W)
    return h * W + w, mask


@_device_fn
def _ones_column(xp, taps, T: tl.constexpr):
    """The patch tile with 1 in column T (it is 0 there: T is past the last tap), the
    column that multiplies beta in sigma and sums dsigma into dbeta."""
    return xp + (taps == T).to(xp.dtype)[None, :]


@_device_fn
def _tap(hb, wb, pmask, uv, H, W, dH, dW, KW: tl.constexpr):
    """Offsets and mask of tap uv of every pixel of the tile (length-P vectors)."""
    h = hb + (uv // KW) * dH
    w = wb + (uv % KW) * dW
    mask = pmask & (h >= 0) & (h < H) & (w >= 0) & (w < W)
    return h * W + w, mask


@_device_fn
def _weights_o(w_ptr, kb_ptr, rows, omask, taps, T: tl.constexpr, HAS_KB: tl.constexpr):
    """(TP x BLOCK_O) tile [Q[o, c, uv, ab] for ab < T; beta[o, c, uv] at ab = T; 0],
    rows = index (o, c, uv) of each column's row of Q viewed (O*Cg*T, T)."""
    in_q = (taps < T)[:, None]
    ptrs = tl.where(in_q, w_ptr + rows[None, :] * T + taps[:, None], kb_ptr + rows[None, :])
    if HAS_KB:
        mask = (taps <= T)[:, None] & omask[None, :]
    else:
        mask = in_q & omask[None, :]
    return tl.load(ptrs, mask=mask, other=0.0)


@_device_fn
def _weights_uv(w_ptr, kb_ptr, oc, taps, T: tl.constexpr, HAS_KB: tl.constexpr):
    """(TP x TP) tile [ab, uv] = Q[o, c, uv, ab] for ab < T, beta[o, c, uv] at ab = T,
    of the pair index oc = o * Cg + c."""
    in_q = (taps < T)[:, None]
    ptrs = tl.where(in_q, w_ptr + oc * T * T + taps[None, :] * T + taps[:, None], kb_ptr + oc * T + taps[None, :])
    if HAS_KB:
        mask = (taps <= T)[:, None] & (taps < T)[None, :]
    else:
        mask = in_q & (taps < T)[None, :]
    return tl.load(ptrs, mask=mask, other=0.0)


@_device_fn
def _split_chunks(sp, S, N, L, CHUNK: tl.constexpr):
    """[start, end) of split sp of the N * n_ck chunks (n_ck per image), and n_ck."""
    n_ck = tl.cdiv(L, CHUNK)
    total = N * n_ck
    per = tl.cdiv(total, S)
    start = sp * per
    return start, tl.minimum(start + per, total), n_ck


@_device_fn
def _pixel_program(NB, n0, L, BLOCK_P: tl.constexpr):
    """(image, pixel-tile index, channel-block index) of this program: pixel tiles of
    the launch's NB images fastest, as grid.x of a (tiles, blocks) grid would be."""
    n_pt = tl.cdiv(L, BLOCK_P)
    pid = tl.program_id(0)
    per_block = NB * n_pt
    blk = pid // per_block
    r = pid % per_block
    return n0 + r // n_pt, r % n_pt, blk


@_device_fn
def _pixel_tile(n, pt, L, Wo, H, W, sH, sW, pH, pW, dH, dW,
                KW: tl.constexpr, T: tl.constexpr, TP: tl.constexpr, IDX64: tl.constexpr,
                BLOCK_P: tl.constexpr):
    """Pixel tile pt of image n: the image as a wide index nw, the pixels (offs_p,
    pmask) and the tile's zero-padded patch (taps, hb, wb, xoff, xmask)."""
    offs_p = pt * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < L
    taps = tl.arange(0, TP)
    hb, wb = _origin(offs_p, Wo, sH, sW, pH, pW)
    xoff, xmask = _patch(hb, wb, pmask, taps, H, W, dH, dW, KW, T)
    return _wide(n, IDX64), offs_p, pmask, taps, hb, wb, xoff, xmask


@_device_fn
def _input_channel_tile(x_ptr, n0, NB, C, H, W, Ho, Wo, Cg, sH, sW, pH, pW, dH, dW,
                        KW: tl.constexpr, T: tl.constexpr, TP: tl.constexpr, IDX64: tl.constexpr,
                        BLOCK_P: tl.constexpr):
    """The start of the input-gradient programs (NB images from n0 * pixel tiles, fastest,
    * C): the input channel cin with its group g and index c there, L = Ho * Wo, the
    _pixel_tile and the channel's plane x_base."""
    L = Ho * Wo
    n, pt, cin = _pixel_program(NB, n0, L, BLOCK_P)
    nw, offs_p, pmask, taps, hb, wb, xoff, xmask = _pixel_tile(
        n, pt, L, Wo, H, W, sH, sW, pH, pW, dH, dW, KW, T, TP, IDX64, BLOCK_P)
    x_base = x_ptr + (nw * C + cin) * H * W
    return cin, cin // Cg, cin % Cg, nw, L, offs_p, pmask, taps, hb, wb, xoff, xmask, x_base


# --------------------------------------------------------------------------- forward


@triton.jit
def fwd_o_kernel(
    x_ptr, w_ptr, kb_ptr, b_ptr, y_ptr,
    n0, NB, C, H, W, O, Ho, Wo, Cg, Og,
    sH, sW, pH, pW, dH, dW,
    KH: tl.constexpr, KW: tl.constexpr, TP: tl.constexpr,
    HAS_KB: tl.constexpr, HAS_BIAS: tl.constexpr,
    LOW_DOT: tl.constexpr, PREC: tl.constexpr, TANH: tl.constexpr, IDX64: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr,
):
    # programs: NB images * pixel tiles (fastest) * groups * channel tiles; consecutive
    # programs share weights.
    T: tl.constexpr = KH * KW
    L = Ho * Wo
    n, pt, blk = _pixel_program(NB, n0, L, BLOCK_P)
    n_ot = tl.cdiv(Og, BLOCK_O)
    g = blk // n_ot
    ot = blk % n_ot
    nw, offs_p, pmask, taps, hb, wb, xoff, xmask = _pixel_tile(
        n, pt, L, Wo, H, W, sH, sW, pH, pW, dH, dW, KW, T, TP, IDX64, BLOCK_P)
    offs_o = g * Og + ot * BLOCK_O + tl.arange(0, BLOCK_O)
    omask = (ot * BLOCK_O + tl.arange(0, BLOCK_O)) < Og

    acc = tl.zeros((BLOCK_P, BLOCK_O), dtype=tl.float32)
    for c in range(0, Cg):
        x_base = x_ptr + (nw * C + g * Cg + c) * H * W
        xp = tl.load(x_base + xoff, mask=xmask, other=0.0)
        if not LOW_DOT:
            xp = xp.to(tl.float32)
        xa = _ones_column(xp, taps, T)
        w_rows = (_wide(offs_o, IDX64) * Cg + c) * T  # row (o, c, uv=0) of Q viewed (O*Cg*T, T)
        for uv in range(0, T):
            wt = _weights_o(w_ptr, kb_ptr, w_rows + uv, omask, taps, T, HAS_KB)
            if not LOW_DOT:
                wt = wt.to(tl.float32)
            s = tl.dot(xa, wt, input_precision=PREC, out_dtype=tl.float32)
            k = _tanh(s, TANH)
            uoff, umask = _tap(hb, wb, pmask, uv, H, W, dH, dW, KW)
            xuv = tl.load(x_base + uoff, mask=umask, other=0.0).to(tl.float32)
            acc += k * xuv[:, None]
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_o, mask=omask, other=0.0).to(tl.float32)[None, :]
    y_off = (nw * O + offs_o[None, :]) * L + offs_p[:, None]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=pmask[:, None] & omask[None, :])


@triton.jit
def fwd_uv_kernel(
    x_ptr, w_ptr, kb_ptr, b_ptr, y_ptr,
    n0, NB, C, H, W, O, Ho, Wo, Cg, Og,
    sH, sW, pH, pW, dH, dW,
    KH: tl.constexpr, KW: tl.constexpr, TP: tl.constexpr,
    HAS_KB: tl.constexpr, HAS_BIAS: tl.constexpr,
    LOW_DOT: tl.constexpr, PREC: tl.constexpr, TANH: tl.constexpr, IDX64: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    # programs: NB images * pixel tiles (fastest) * O.
    T: tl.constexpr = KH * KW
    L = Ho * Wo
    n, pt, o = _pixel_program(NB, n0, L, BLOCK_P)
    g = o // Og
    nw, offs_p, pmask, taps, hb, wb, xoff, xmask = _pixel_tile(
        n, pt, L, Wo, H, W, sH, sW, pH, pW, dH, dW, KW, T, TP, IDX64, BLOCK_P)

    acc = tl.zeros((BLOCK_P,), dtype=tl.float32)
    for c in range(0, Cg):
        x_base = x_ptr + (nw * C + g * Cg + c) * H * W
        xp = tl.load(x_base + xoff, mask=xmask, other=0.0)
        oc = _wide(o, IDX64) * Cg + c
        wt = _weights_uv(w_ptr, kb_ptr, oc, taps, T, HAS_KB)  # rows ab, columns uv
        if not LOW_DOT:
            xp = xp.to(tl.float32)
            wt = wt.to(tl.float32)
        s = tl.dot(_ones_column(xp, taps, T), wt, input_precision=PREC, out_dtype=tl.float32)
        k = _tanh(s, TANH)
        # Columns >= T: X is 0 there, so they add nothing.
        acc += tl.sum(k * xp.to(tl.float32), axis=1)
    if HAS_BIAS:
        acc += tl.load(b_ptr + o).to(tl.float32)
    y_off = (nw * O + o) * L + offs_p
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=pmask)


# --------------------------------------------------------------------------- grad_input
# One program per (image, input channel, pixel tile): it owns the whole sum over the
# group's output channels, so its patch gradient dX (P x TP) is complete; only the
# overlap of neighbouring patches remains, resolved either by float32 atomics into dx
# (DETERMINISTIC=0) or by writing dX to a column buffer (images of the launch, C, T, L)
# that col2im_kernel gathers in a fixed order (DETERMINISTIC=1). Column T of dX (the
# ones column) is never written.


@_device_fn
def _scatter_patch(dx_ptr, cols_ptr, dxp, nw, n0, cin, C, H, W, L, offs_p, taps, xoff, xmask,
                   T: tl.constexpr, DETERMINISTIC: tl.constexpr):
    if DETERMINISTIC:
        row = ((nw - n0) * C + cin) * T + taps
        cmask = (offs_p < L)[:, None] & (taps < T)[None, :]
        tl.store(cols_ptr + row[None, :] * L + offs_p[:, None], dxp, mask=cmask)
    else:
        base = dx_ptr + (nw * C + cin) * H * W
        tl.atomic_add(base + xoff, dxp, mask=xmask, sem="relaxed")


@triton.jit
def gin_o_kernel(
    go_ptr, x_ptr, w_ptr, kb_ptr, dx_ptr, cols_ptr,
    n0, NB, C, H, W, O, Ho, Wo, Cg, Og,
    sH, sW, pH, pW, dH, dW,
    KH: tl.constexpr, KW: tl.constexpr, TP: tl.constexpr, HAS_KB: tl.constexpr,
    LOW_DOT: tl.constexpr, PREC: tl.constexpr, PREC_B: tl.constexpr, TANH: tl.constexpr,
    DETERMINISTIC: tl.constexpr, IDX64: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr,
):
    T: tl.constexpr = KH * KW
    cin, g, c, nw, L, offs_p, pmask, taps, hb, wb, xoff, xmask, x_base = _input_channel_tile(
        x_ptr, n0, NB, C, H, W, Ho, Wo, Cg, sH, sW, pH, pW, dH, dW, KW, T, TP, IDX64, BLOCK_P)
    xp = tl.load(x_base + xoff, mask=xmask, other=0.0)
    if not LOW_DOT:
        xp = xp.to(tl.float32)
    xa = _ones_column(xp, taps, T)

    dxp = tl.zeros((BLOCK_P, TP), dtype=tl.float32)
    for ot in range(0, tl.cdiv(Og, BLOCK_O)):
        ol = ot * BLOCK_O + tl.arange(0, BLOCK_O)
        omask = ol < Og
        offs_o = g * Og + ol
        go = tl.load(go_ptr + (nw * O + offs_o[None, :]) * L + offs_p[:, None],
                     mask=pmask[:, None] & omask[None, :], other=0.0).to(tl.float32)
        w_rows = (_wide(offs_o, IDX64) * Cg + c) * T
        for uv in range(0, T):
            wt = _weights_o(w_ptr, kb_ptr, w_rows + uv, omask, taps, T, HAS_KB)
            wf = wt.to(tl.float32)
            if not LOW_DOT:
                wt = wf
            s = tl.dot(xa, wt, input_precision=PREC, out_dtype=tl.float32)
            t, dt = _tanh_d(s, TANH)
            uoff, umask = _tap(hb, wb, pmask, uv, H, W, dH, dW, KW)
            xuv = tl.load(x_base + uoff, mask=umask, other=0.0).to(tl.float32)
            dsig = go * dt * xuv[:, None]
            # through the kernel: dX[p, ab] += sum_o dsig[p, o] Q[o, c, uv, ab]
            dxp += tl.dot(dsig, tl.trans(wf), input_precision=PREC_B, out_dtype=tl.float32)
            # direct term: dX[p, uv] += sum_o g[p, o] t[p, o]
            direct = tl.sum(go * t, axis=1)
            dxp += tl.where(taps[None, :] == uv, direct[:, None], 0.0)
    _scatter_patch(dx_ptr, cols_ptr, dxp, nw, n0, cin, C, H, W, L, offs_p, taps, xoff, xmask,
                   T, DETERMINISTIC)


@triton.jit
def gin_uv_kernel(
    go_ptr, x_ptr, w_ptr, kb_ptr, dx_ptr, cols_ptr,
    n0, NB, C, H, W, O, Ho, Wo, Cg, Og,
    sH, sW, pH, pW, dH, dW,
    KH: tl.constexpr, KW: tl.constexpr, TP: tl.constexpr, HAS_KB: tl.constexpr,
    LOW_DOT: tl.constexpr, PREC: tl.constexpr, PREC_B: tl.constexpr, TANH: tl.constexpr,
    DETERMINISTIC: tl.constexpr, IDX64: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    T: tl.constexpr = KH * KW
    cin, g, c, nw, L, offs_p, pmask, taps, hb, wb, xoff, xmask, x_base = _input_channel_tile(
        x_ptr, n0, NB, C, H, W, Ho, Wo, Cg, sH, sW, pH, pW, dH, dW, KW, T, TP, IDX64, BLOCK_P)
    xp = tl.load(x_base + xoff, mask=xmask, other=0.0)
    xf = xp.to(tl.float32)
    if not LOW_DOT:
        xp = xf
    xa = _ones_column(xp, taps, T)

    dxp = tl.zeros((BLOCK_P, TP), dtype=tl.float32)
    for ol in range(0, Og):
        o = g * Og + ol
        go = tl.load(go_ptr + (nw * O + o) * L + offs_p, mask=pmask, other=0.0).to(tl.float32)
        wt = _weights_uv(w_ptr, kb_ptr, _wide(o, IDX64) * Cg + c, taps, T, HAS_KB)  # [ab, uv]
        wf = wt.to(tl.float32)
        if not LOW_DOT:
            wt = wf
        s = tl.dot(xa, wt, input_precision=PREC, out_dtype=tl.float32)
        t, dt = _tanh_d(s, TANH)
        # columns are kernel elements uv, which index the same taps as the patch columns
        dsig = go[:, None] * dt * xf
        dxp += go[:, None] * t
        dxp += tl.dot(dsig, tl.trans(wf), input_precision=PREC_B, out_dtype=tl.float32)
    _scatter_patch(dx_ptr, cols_ptr, dxp, nw, n0, cin, C, H, W, L, offs_p, taps, xoff, xmask,
                   T, DETERMINISTIC)


@triton.jit
def col2im_kernel(
    cols_ptr, dx_ptr, n0, NB, C, H, W, Ho, Wo,
    sH, sW, pH, pW, dH, dW,
    KH: tl.constexpr, KW: tl.constexpr, IDX64: tl.constexpr, BLOCK: tl.constexpr,
):
    # programs: NB * C planes (fastest) * input-pixel tiles. Gathers, in tap order, the
    # patch gradients that touch each input pixel: no atomics, fixed order.
    T: tl.constexpr = KH * KW
    L = Ho * Wo
    pid = tl.program_id(0)
    planes = NB * C
    plane = _wide(pid % planes, IDX64)  # (n - n0) * C + cin
    offs = (pid // planes) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < H * W
    h = offs // W
    w = offs % W
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for ab in range(0, T):
        hn = h + pH - (ab // KW) * dH
        wn = w + pW - (ab % KW) * dW
        hc = tl.maximum(hn, 0)  # keep the division on non-negative numbers
        wc = tl.maximum(wn, 0)
        i = hc // sH
        j = wc // sW
        ok = mask & (hn >= 0) & (wn >= 0) & (hc - i * sH == 0) & (wc - j * sW == 0) & (i < Ho) & (j < Wo)
        src = (plane * T + ab) * L + i * Wo + j
        acc += tl.load(cols_ptr + src, mask=ok, other=0.0)
    dst = (plane + n0 * C) * H * W + offs
    tl.store(dx_ptr + dst, acc.to(dx_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------- grad_weight
# The reduction over (image, pixel) runs over chunks of CHUNK pixels of one image
# (CHUNK is fixed per shape by ops.py, never by tuning; BLOCK_P divides it). Each chunk
# is summed into a fresh float32 accumulator and added to the program's float64
# accumulator, so no float32 sum runs over more than CHUNK pixels. The chunks are split
# S ways in contiguous ranges; program (block, s) stores its float64 partial sum [dQ,
# dbeta] to its slot of the workspace (S, O, Cg, T, T + 1) and the host sums the S
# slots in a fixed order. No atomics; with BLOCK_P = CHUNK (deterministic mode) the
# result does not depend on any tuning choice.


@triton.jit
def gw_o_kernel(
    go_ptr, x_ptr, w_ptr, kb_ptr, ws_ptr,
    N, C, H, W, O, Ho, Wo, Cg, Og, S,
    sH, sW, pH, pW, dH, dW,
    KH: tl.constexpr, KW: tl.constexpr, TP: tl.constexpr, HAS_KB: tl.constexpr,
    LOW_DOT: tl.constexpr, PREC: tl.constexpr, PREC_B: tl.constexpr, TANH: tl.constexpr,
    IDX64: tl.constexpr, CHUNK: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr,
):
    # programs: blocks (fastest) * S; block index = ((g, ot), c, uv), uv fastest so that
    # neighbouring programs read the same patches.
    T: tl.constexpr = KH * KW
    L = Ho * Wo
    n_ot = tl.cdiv(Og, BLOCK_O)
    blocks = (O // Og) * n_ot * Cg * T
    blk = tl.program_id(0) % blocks
    sp = tl.program_id(0) // blocks
    uv = blk % T
    r = blk // T
    c = r % Cg
    r = r // Cg
    ot = r % n_ot
    g = r // n_ot
    cin = g * Cg + c

    taps = tl.arange(0, TP)
    ol = ot * BLOCK_O + tl.arange(0, BLOCK_O)
    omask = ol < Og
    offs_o = g * Og + ol
    w_rows = (_wide(offs_o, IDX64) * Cg + c) * T + uv  # row (o, c, uv) of Q viewed (O*Cg*T, T)
    wt = _weights_o(w_ptr, kb_ptr, w_rows, omask, taps, T, HAS_KB)
    if not LOW_DOT:
        wt = wt.to(tl.float32)

    start, end, n_ck = _split_chunks(sp, S, N, L, CHUNK)
    acc = tl.zeros((TP, BLOCK_O), dtype=tl.float64)  # [ab (T: beta), o]
    for item in range(start, end):
        n = item // n_ck
        p0 = (item % n_ck) * CHUNK
        nw = _wide(n, IDX64)
        x_base = x_ptr + (nw * C + cin) * H * W
        part = tl.zeros((TP, BLOCK_O), dtype=tl.float32)
        for p in range(p0, tl.minimum(p0 + CHUNK, L), BLOCK_P):
            offs_p = p + tl.arange(0, BLOCK_P)
            pmask = offs_p < L
            hb, wb = _origin(offs_p, Wo, sH, sW, pH, pW)
            xoff, xmask = _patch(hb, wb, pmask, taps, H, W, dH, dW, KW, T)
            xp = tl.load(x_base + xoff, mask=xmask, other=0.0)
            xf = _ones_column(xp.to(tl.float32), taps, T)
            if LOW_DOT:
                xa = _ones_column(xp, taps, T)
            else:
                xa = xf
            go = tl.load(go_ptr + (nw * O + offs_o[None, :]) * L + offs_p[:, None],
                         mask=pmask[:, None] & omask[None, :], other=0.0).to(tl.float32)
            s = tl.dot(xa, wt, input_precision=PREC, out_dtype=tl.float32)
            _, dt = _tanh_d(s, TANH)
            uoff, umask = _tap(hb, wb, pmask, uv, H, W, dH, dW, KW)
            xuv = tl.load(x_base + uoff, mask=umask, other=0.0).to(tl.float32)
            dsig = go * dt * xuv[:, None]
            # [dQ, dbeta][o, c, uv, ab] += sum_p [X, 1][p, ab] dsig[p, o]
            part += tl.dot(tl.trans(xf), dsig, input_precision=PREC_B, out_dtype=tl.float32)
        acc += part.to(tl.float64)
    slot = _wide(sp, IDX64) * O * Cg * T
    tl.store(ws_ptr + (slot + w_rows[None, :]) * (T + 1) + taps[:, None], acc,
             mask=(taps <= T)[:, None] & omask[None, :])


@triton.jit
def gw_uv_kernel(
    go_ptr, x_ptr, w_ptr, kb_ptr, ws_ptr,
    N, C, H, W, O, Ho, Wo, Cg, Og, S,
    sH, sW, pH, pW, dH, dW,
    KH: tl.constexpr, KW: tl.constexpr, TP: tl.constexpr, HAS_KB: tl.constexpr,
    LOW_DOT: tl.constexpr, PREC: tl.constexpr, PREC_B: tl.constexpr, TANH: tl.constexpr,
    IDX64: tl.constexpr, CHUNK: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    # programs: O * Cg pairs (fastest) * S; pair index oc = o * Cg + c.
    T: tl.constexpr = KH * KW
    L = Ho * Wo
    pid = tl.program_id(0)
    oc = _wide(pid % (O * Cg), IDX64)
    sp = pid // (O * Cg)
    o = oc // Cg
    c = oc % Cg
    cin = (o // Og) * Cg + c

    taps = tl.arange(0, TP)
    wt = _weights_uv(w_ptr, kb_ptr, oc, taps, T, HAS_KB)  # [ab, uv]
    if not LOW_DOT:
        wt = wt.to(tl.float32)

    start, end, n_ck = _split_chunks(sp, S, N, L, CHUNK)
    acc = tl.zeros((TP, TP), dtype=tl.float64)  # [uv, ab (T: beta)]
    for item in range(start, end):
        n = item // n_ck
        p0 = (item % n_ck) * CHUNK
        nw = _wide(n, IDX64)
        part = tl.zeros((TP, TP), dtype=tl.float32)
        for p in range(p0, tl.minimum(p0 + CHUNK, L), BLOCK_P):
            offs_p = p + tl.arange(0, BLOCK_P)
            pmask = offs_p < L
            hb, wb = _origin(offs_p, Wo, sH, sW, pH, pW)
            xoff, xmask = _patch(hb, wb, pmask, taps, H, W, dH, dW, KW, T)
            xp = tl.load(x_ptr + (nw * C + cin) * H * W + xoff, mask=xmask, other=0.0)
            xf = xp.to(tl.float32)
            xfa = _ones_column(xf, taps, T)
            if LOW_DOT:
                xa = _ones_column(xp, taps, T)
            else:
                xa = xfa
            go = tl.load(go_ptr + (nw * O + o) * L + offs_p, mask=pmask, other=0.0).to(tl.float32)
            s = tl.dot(xa, wt, input_precision=PREC, out_dtype=tl.float32)
            _, dt = _tanh_d(s, TANH)
            dsig = go[:, None] * dt * xf  # [p, uv]; 0 in columns >= T
            part += tl.dot(tl.trans(dsig), xfa, input_precision=PREC_B, out_dtype=tl.float32)
        acc += part.to(tl.float64)
    slot = _wide(sp, IDX64) * O * Cg + oc
    tl.store(ws_ptr + (slot * T + taps[:, None]) * (T + 1) + taps[None, :], acc,
             mask=(taps < T)[:, None] & (taps <= T)[None, :])
