"""Triton kernels of the adaptive convolution (SPEC section 1).

Notation: T = kH*kW taps, TP = T padded to a power of two >= 16 (tl.dot needs
each dimension >= 16), P = a tile of output pixels of one image, Og/Cg = output /
input channels per group. Weights are viewed as Q[o, c, uv, ab] (O, Cg, T, T),
kernel biases as beta[o, c, uv] (O, Cg, T). All tensors are contiguous.

Two tilings of the generating-filter product sigma = X Q^T:

* channel mode ("_o" kernels): one tl.dot per kernel element uv,
  patch (P x TP taps ab) @ weights (TP x BLOCK_O output channels). No tanh is
  wasted when Og is a multiple of 16.
* tap mode ("_uv" kernels): one output channel at a time, one tl.dot for all
  kernel elements, patch (P x TP taps ab) @ Q[o, c]^T (TP x TP kernel elements
  uv). The result's columns line up with the patch's own columns, so
  K*X is an elementwise product. Used when Og is small (depthwise): channel mode
  would pad Og up to 16 and evaluate up to 16x more tanh than needed.

sigma and K live in registers only; the backward kernels recompute them.
"""

import triton
import triton.language as tl
from triton import knobs

# Decided when this module is imported, exactly as @triton.jit decides it.
INTERPRET = bool(knobs.runtime.interpret)

# Helpers called from the kernels. The interpreter re-patches triton.language on every
# call of a jitted helper (milliseconds each), so there they are plain Python functions,
# which it runs the same way inline.
_device_fn = (lambda fn: fn) if INTERPRET else triton.jit


@_device_fn
def _tanh_parts(x, FAST: tl.constexpr):
    """(tanh(x), r, is_small) in float32; see _tanh_d for the meaning.

    FAST: the hardware's tanh.approx.f32 (max rel. error ~2^-11), GPU only; r and
    is_small are then unused placeholders. Otherwise accurate to about 1e-7 without
    libdevice (the interpreter has none): |x| >= 1/8 uses 1 - 2r with
    r = 1 / (exp(2|x|) + 1), which saturates cleanly to +-1; |x| < 1/8 uses the Taylor
    polynomial to x^7 (remainder < 4e-9 relative), which keeps small values accurate
    relative to themselves. NaN propagates through both.
    """
    if FAST:
        t = tl.inline_asm_elementwise(
            "tanh.approx.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1
        )
        r = t
        is_small = x != x
    else:
        ax = tl.abs(x)
        r = 1.0 / (tl.exp2(ax * 2.8853900817779268) + 1.0)  # exp2(|x| * 2/ln 2) = exp(2|x|)
        big = 1.0 - 2.0 * r
        x2 = x * x
        small = x + x * x2 * ((-0.053968253968253971 * x2 + 0.13333333333333333) * x2 - 0.33333333333333333)
        is_small = ax < 0.125
        t = tl.where(is_small, small, tl.where(x < 0, -big, big))
    return t, r, is_small


@_device_fn
def _tanh(x, FAST: tl.constexpr):
    t, _r, _s = _tanh_parts(x, FAST)
    return t


@_device_fn
def _tanh_d(x, FAST: tl.constexpr):
    """(tanh(x), 1 - tanh(x)^2). In exact mode 1 - t^2 = 4 r (1 - r) for |x| >= 1/8,
    free of the cancellation of 1 - t*t near |t| = 1."""
    t, r, is_small = _tanh_parts(x, FAST)
    dt = (1.0 - t) * (1.0 + t)
    if not FAST:
        dt = tl.where(is_small, dt, 4.0 * r * (1.0 - r))
    return t, dt


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
def _tap(hb, wb, pmask, uv, H, W, dH, dW, KW: tl.constexpr):
    """Offsets and mask of tap uv of every pixel of the tile (length-P vectors)."""
    h = hb + (uv // KW) * dH
    w = wb + (uv % KW) * dW
    mask = pmask & (h >= 0) & (h < H) & (w >= 0) & (w < W)
    return h * W + w, mask


# --------------------------------------------------------------------------- forward


@triton.jit
def fwd_o_kernel(
    x_ptr, w_ptr, kb_ptr, b_ptr, y_ptr,
    C, H, W, O, Ho, Wo, Cg, Og,
    sH, sW, pH, pW, dH, dW,
    KH: tl.constexpr, KW: tl.constexpr, TP: tl.constexpr,
    HAS_KB: tl.constexpr, HAS_BIAS: tl.constexpr,
    LOW_DOT: tl.constexpr, PREC: tl.constexpr, FAST_TANH: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr,
):
    # grid: (N * pixel tiles, groups * channel tiles); consecutive programs share weights.
    T: tl.constexpr = KH * KW
    L = Ho * Wo
    n_pt = tl.cdiv(L, BLOCK_P)
    n_ot = tl.cdiv(Og, BLOCK_O)
    pid = tl.program_id(0)
    n = pid // n_pt
    pt = pid % n_pt
    g = tl.program_id(1) // n_ot
    ot = tl.program_id(1) % n_ot

    offs_p = pt * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < L
    taps = tl.arange(0, TP)
    tmask = taps < T
    hb, wb = _origin(offs_p, Wo, sH, sW, pH, pW)
    xoff, xmask = _patch(hb, wb, pmask, taps, H, W, dH, dW, KW, T)
    offs_o = g * Og + ot * BLOCK_O + tl.arange(0, BLOCK_O)
    omask = (ot * BLOCK_O + tl.arange(0, BLOCK_O)) < Og
    wmask = tmask[:, None] & omask[None, :]

    acc = tl.zeros((BLOCK_P, BLOCK_O), dtype=tl.float32)
    for c in range(0, Cg):
        x_base = x_ptr + (n.to(tl.int64) * C + g * Cg + c) * H * W
        xp = tl.load(x_base + xoff, mask=xmask, other=0.0)
        if not LOW_DOT:
            xp = xp.to(tl.float32)
        w_rows = (offs_o.to(tl.int64) * Cg + c) * T  # row (o, c, uv=0) of Q viewed (O*Cg*T, T)
        for uv in range(0, T):
            wt = tl.load(w_ptr + (w_rows[None, :] + uv) * T + taps[:, None], mask=wmask, other=0.0)
            if not LOW_DOT:
                wt = wt.to(tl.float32)
            s = tl.dot(xp, wt, input_precision=PREC, out_dtype=tl.float32)
            if HAS_KB:
                s += tl.load(kb_ptr + w_rows + uv, mask=omask, other=0.0).to(tl.float32)[None, :]
            k = _tanh(s, FAST_TANH)
            uoff, umask = _tap(hb, wb, pmask, uv, H, W, dH, dW, KW)
            xuv = tl.load(x_base + uoff, mask=umask, other=0.0).to(tl.float32)
            acc += k * xuv[:, None]
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_o, mask=omask, other=0.0).to(tl.float32)[None, :]
    y_off = (n.to(tl.int64) * O + offs_o[None, :]) * L + offs_p[:, None]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=pmask[:, None] & omask[None, :])


@triton.jit
def fwd_uv_kernel(
    x_ptr, w_ptr, kb_ptr, b_ptr, y_ptr,
    C, H, W, O, Ho, Wo, Cg, Og,
    sH, sW, pH, pW, dH, dW,
    KH: tl.constexpr, KW: tl.constexpr, TP: tl.constexpr,
    HAS_KB: tl.constexpr, HAS_BIAS: tl.constexpr,
    LOW_DOT: tl.constexpr, PREC: tl.constexpr, FAST_TANH: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    # grid: (N * pixel tiles, O).
    T: tl.constexpr = KH * KW
    L = Ho * Wo
    n_pt = tl.cdiv(L, BLOCK_P)
    pid = tl.program_id(0)
    n = pid // n_pt
    pt = pid % n_pt
    o = tl.program_id(1)
    g = o // Og

    offs_p = pt * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < L
    taps = tl.arange(0, TP)
    tmask = taps < T
    hb, wb = _origin(offs_p, Wo, sH, sW, pH, pW)
    xoff, xmask = _patch(hb, wb, pmask, taps, H, W, dH, dW, KW, T)
    # wt[ab, uv] = Q[o, c, uv, ab]: rows are patch taps, columns kernel elements.
    qoff = taps[None, :] * T + taps[:, None]
    qmask = tmask[:, None] & tmask[None, :]

    acc = tl.zeros((BLOCK_P,), dtype=tl.float32)
    for c in range(0, Cg):
        x_base = x_ptr + (n.to(tl.int64) * C + g * Cg + c) * H * W
        xp = tl.load(x_base + xoff, mask=xmask, other=0.0)
        oc = o.to(tl.int64) * Cg + c
        wt = tl.load(w_ptr + oc * T * T + qoff, mask=qmask, other=0.0)
        if not LOW_DOT:
            xp = xp.to(tl.float32)
            wt = wt.to(tl.float32)
        s = tl.dot(xp, wt, input_precision=PREC, out_dtype=tl.float32)
        if HAS_KB:
            s += tl.load(kb_ptr + oc * T + taps, mask=tmask, other=0.0).to(tl.float32)[None, :]
        k = _tanh(s, FAST_TANH)
        # Padded columns: X is 0 there, so they add nothing.
        acc += tl.sum(k * xp.to(tl.float32), axis=1)
    if HAS_BIAS:
        acc += tl.load(b_ptr + o).to(tl.float32)
    y_off = (n.to(tl.int64) * O + o) * L + offs_p
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=pmask)


# --------------------------------------------------------------------------- grad_input
# One program per (image, input channel, pixel tile): it owns the whole sum over the
# group's output channels, so its patch gradient dX (P x TP) is complete; only the
# overlap of neighbouring patches remains, resolved either by float32 atomics into dx
# (DETERMINISTIC=0) or by writing dX to a column buffer (N, C, T, L) that col2im_kernel
# gathers in a fixed order (DETERMINISTIC=1).


@_device_fn
def _scatter_patch(dx_ptr, cols_ptr, dxp, n, n0, cin, C, H, W, L, offs_p, taps, xoff, xmask,
                   T: tl.constexpr, DETERMINISTIC: tl.constexpr):
    if DETERMINISTIC:
        row = ((n - n0).to(tl.int64) * C + cin) * T + taps
        cmask = (offs_p < L)[:, None] & (taps < T)[None, :]
        tl.store(cols_ptr + row[None, :] * L + offs_p[:, None], dxp, mask=cmask)
    else:
        base = dx_ptr + (n.to(tl.int64) * C + cin) * H * W
        tl.atomic_add(base + xoff, dxp, mask=xmask, sem="relaxed")


@triton.jit
def gin_o_kernel(
    go_ptr, x_ptr, w_ptr, kb_ptr, dx_ptr, cols_ptr,
    n0, C, H, W, O, Ho, Wo, Cg, Og,
    sH, sW, pH, pW, dH, dW,
    KH: tl.constexpr, KW: tl.constexpr, TP: tl.constexpr, HAS_KB: tl.constexpr,
    LOW_DOT: tl.constexpr, PREC: tl.constexpr, PREC_B: tl.constexpr, FAST_TANH: tl.constexpr,
    DETERMINISTIC: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr,
):
    # grid: (images of this launch * pixel tiles, C); images start at n0.
    T: tl.constexpr = KH * KW
    L = Ho * Wo
    n_pt = tl.cdiv(L, BLOCK_P)
    pid = tl.program_id(0)
    n = n0 + pid // n_pt
    pt = pid % n_pt
    cin = tl.program_id(1)
    g = cin // Cg
    c = cin % Cg

    offs_p = pt * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < L
    taps = tl.arange(0, TP)
    tmask = taps < T
    hb, wb = _origin(offs_p, Wo, sH, sW, pH, pW)
    xoff, xmask = _patch(hb, wb, pmask, taps, H, W, dH, dW, KW, T)
    x_base = x_ptr + (n.to(tl.int64) * C + cin) * H * W
    xp = tl.load(x_base + xoff, mask=xmask, other=0.0)
    if not LOW_DOT:
        xp = xp.to(tl.float32)

    dxp = tl.zeros((BLOCK_P, TP), dtype=tl.float32)
    for ot in range(0, tl.cdiv(Og, BLOCK_O)):
        ol = ot * BLOCK_O + tl.arange(0, BLOCK_O)
        omask = ol < Og
        offs_o = g * Og + ol
        go = tl.load(go_ptr + (n.to(tl.int64) * O + offs_o[None, :]) * L + offs_p[:, None],
                     mask=pmask[:, None] & omask[None, :], other=0.0).to(tl.float32)
        w_rows = (offs_o.to(tl.int64) * Cg + c) * T
        wmask = tmask[:, None] & omask[None, :]
        for uv in range(0, T):
            wt = tl.load(w_ptr + (w_rows[None, :] + uv) * T + taps[:, None], mask=wmask, other=0.0)
            wf = wt.to(tl.float32)
            if not LOW_DOT:
                wt = wf
            s = tl.dot(xp, wt, input_precision=PREC, out_dtype=tl.float32)
            if HAS_KB:
                s += tl.load(kb_ptr + w_rows + uv, mask=omask, other=0.0).to(tl.float32)[None, :]
            t, dt = _tanh_d(s, FAST_TANH)
            uoff, umask = _tap(hb, wb, pmask, uv, H, W, dH, dW, KW)
            xuv = tl.load(x_base + uoff, mask=umask, other=0.0).to(tl.float32)
            dsig = go * dt * xuv[:, None]
            # through the kernel: dX[p, ab] += sum_o dsig[p, o] Q[o, c, uv, ab]
            dxp += tl.dot(dsig, tl.trans(wf), input_precision=PREC_B, out_dtype=tl.float32)
            # direct term: dX[p, uv] += sum_o g[p, o] t[p, o]
            direct = tl.sum(go * t, axis=1)
            dxp += tl.where(taps[None, :] == uv, direct[:, None], 0.0)
    _scatter_patch(dx_ptr, cols_ptr, dxp, n, n0, cin, C, H, W, L, offs_p, taps, xoff, xmask,
                   T, DETERMINISTIC)


@triton.jit
def gin_uv_kernel(
    go_ptr, x_ptr, w_ptr, kb_ptr, dx_ptr, cols_ptr,
    n0, C, H, W, O, Ho, Wo, Cg, Og,
    sH, sW, pH, pW, dH, dW,
    KH: tl.constexpr, KW: tl.constexpr, TP: tl.constexpr, HAS_KB: tl.constexpr,
    LOW_DOT: tl.constexpr, PREC: tl.constexpr, PREC_B: tl.constexpr, FAST_TANH: tl.constexpr,
    DETERMINISTIC: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    # grid: (images of this launch * pixel tiles, C).
    T: tl.constexpr = KH * KW
    L = Ho * Wo
    n_pt = tl.cdiv(L, BLOCK_P)
    pid = tl.program_id(0)
    n = n0 + pid // n_pt
    pt = pid % n_pt
    cin = tl.program_id(1)
    g = cin // Cg
    c = cin % Cg

    offs_p = pt * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < L
    taps = tl.arange(0, TP)
    tmask = taps < T
    hb, wb = _origin(offs_p, Wo, sH, sW, pH, pW)
    xoff, xmask = _patch(hb, wb, pmask, taps, H, W, dH, dW, KW, T)
    xp = tl.load(x_ptr + (n.to(tl.int64) * C + cin) * H * W + xoff, mask=xmask, other=0.0)
    xf = xp.to(tl.float32)
    if not LOW_DOT:
        xp = xf
    qoff = taps[None, :] * T + taps[:, None]
    qmask = tmask[:, None] & tmask[None, :]

    dxp = tl.zeros((BLOCK_P, TP), dtype=tl.float32)
    for ol in range(0, Og):
        o = g * Og + ol
        go = tl.load(go_ptr + (n.to(tl.int64) * O + o) * L + offs_p, mask=pmask, other=0.0).to(tl.float32)
        oc = o.to(tl.int64) * Cg + c
        wt = tl.load(w_ptr + oc * T * T + qoff, mask=qmask, other=0.0)  # [ab, uv]
        wf = wt.to(tl.float32)
        if not LOW_DOT:
            wt = wf
        s = tl.dot(xp, wt, input_precision=PREC, out_dtype=tl.float32)
        if HAS_KB:
            s += tl.load(kb_ptr + oc * T + taps, mask=tmask, other=0.0).to(tl.float32)[None, :]
        t, dt = _tanh_d(s, FAST_TANH)
        # columns are kernel elements uv, which index the same taps as the patch columns
        dsig = go[:, None] * dt * xf
        dxp += go[:, None] * t
        dxp += tl.dot(dsig, tl.trans(wf), input_precision=PREC_B, out_dtype=tl.float32)
    _scatter_patch(dx_ptr, cols_ptr, dxp, n, n0, cin, C, H, W, L, offs_p, taps, xoff, xmask,
                   T, DETERMINISTIC)


@triton.jit
def col2im_kernel(
    cols_ptr, dx_ptr, n0, C, H, W, Ho, Wo,
    sH, sW, pH, pW, dH, dW,
    KH: tl.constexpr, KW: tl.constexpr, BLOCK: tl.constexpr,
):
    # grid: (images of this launch * C, input-pixel tiles). Gathers, in tap order,
    # the patch gradients that touch each input pixel: no atomics, fixed order.
    T: tl.constexpr = KH * KW
    L = Ho * Wo
    plane = tl.program_id(0)  # (n - n0) * C + cin
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
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
        src = (plane.to(tl.int64) * T + ab) * L + i * Wo + j
        acc += tl.load(cols_ptr + src, mask=ok, other=0.0)
    dst = (plane.to(tl.int64) + n0 * C) * H * W + offs
    tl.store(dx_ptr + dst, acc.to(dx_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------- grad_weight
# The reduction over (image, pixel) is split S ways: program (block, s) sums its share of
# the (image, pixel tile) items in registers and stores the partial sum to its own slot of
# a float32 workspace (S, O, Cg, T, T); the host then sums the S slots in a fixed order.
# No atomics, so the result is deterministic.


@triton.jit
def gw_o_kernel(
    go_ptr, x_ptr, w_ptr, kb_ptr, wsw_ptr, wsb_ptr,
    N, C, H, W, O, Ho, Wo, Cg, Og, S,
    sH, sW, pH, pW, dH, dW,
    KH: tl.constexpr, KW: tl.constexpr, TP: tl.constexpr, HAS_KB: tl.constexpr,
    LOW_DOT: tl.constexpr, PREC: tl.constexpr, PREC_B: tl.constexpr, FAST_TANH: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr,
):
    # grid: (groups * channel tiles * Cg * T, S); block index = ((g, ot), c), uv fastest so
    # that neighbouring programs read the same patches.
    T: tl.constexpr = KH * KW
    L = Ho * Wo
    blk = tl.program_id(0)
    sp = tl.program_id(1)
    uv = blk % T
    r = blk // T
    c = r % Cg
    r = r // Cg
    n_ot = tl.cdiv(Og, BLOCK_O)
    ot = r % n_ot
    g = r // n_ot
    cin = g * Cg + c

    taps = tl.arange(0, TP)
    tmask = taps < T
    ol = ot * BLOCK_O + tl.arange(0, BLOCK_O)
    omask = ol < Og
    offs_o = g * Og + ol
    w_rows = (offs_o.to(tl.int64) * Cg + c) * T + uv  # row (o, c, uv) of Q viewed (O*Cg*T, T)
    wt = tl.load(w_ptr + w_rows[None, :] * T + taps[:, None], mask=tmask[:, None] & omask[None, :], other=0.0)
    if not LOW_DOT:
        wt = wt.to(tl.float32)
    if HAS_KB:
        kb = tl.load(kb_ptr + w_rows, mask=omask, other=0.0).to(tl.float32)

    n_pt = tl.cdiv(L, BLOCK_P)
    total = N * n_pt
    per = tl.cdiv(total, S)
    start = sp * per
    end = tl.minimum(start + per, total)
    acc_w = tl.zeros((TP, BLOCK_O), dtype=tl.float32)
    acc_b = tl.zeros((BLOCK_O,), dtype=tl.float32)
    for item in range(start, end):
        n = item // n_pt
        offs_p = (item % n_pt) * BLOCK_P + tl.arange(0, BLOCK_P)
        pmask = offs_p < L
        hb, wb = _origin(offs_p, Wo, sH, sW, pH, pW)
        xoff, xmask = _patch(hb, wb, pmask, taps, H, W, dH, dW, KW, T)
        x_base = x_ptr + (n.to(tl.int64) * C + cin) * H * W
        xp = tl.load(x_base + xoff, mask=xmask, other=0.0)
        xf = xp.to(tl.float32)
        if not LOW_DOT:
            xp = xf
        go = tl.load(go_ptr + (n.to(tl.int64) * O + offs_o[None, :]) * L + offs_p[:, None],
                     mask=pmask[:, None] & omask[None, :], other=0.0).to(tl.float32)
        s = tl.dot(xp, wt, input_precision=PREC, out_dtype=tl.float32)
        if HAS_KB:
            s += kb[None, :]
        _, dt = _tanh_d(s, FAST_TANH)
        uoff, umask = _tap(hb, wb, pmask, uv, H, W, dH, dW, KW)
        xuv = tl.load(x_base + uoff, mask=umask, other=0.0).to(tl.float32)
        dsig = go * dt * xuv[:, None]
        # dQ[o, c, uv, ab] += sum_p X[p, ab] dsig[p, o]
        acc_w += tl.dot(tl.trans(xf), dsig, input_precision=PREC_B, out_dtype=tl.float32)
        acc_b += tl.sum(dsig, axis=0)
    slot = sp.to(tl.int64) * O * Cg * T
    tl.store(wsw_ptr + (slot + w_rows[None, :]) * T + taps[:, None], acc_w,
             mask=tmask[:, None] & omask[None, :])
    tl.store(wsb_ptr + slot + w_rows, acc_b, mask=omask)


@triton.jit
def gw_uv_kernel(
    go_ptr, x_ptr, w_ptr, kb_ptr, wsw_ptr, wsb_ptr,
    N, C, H, W, O, Ho, Wo, Cg, Og, S,
    sH, sW, pH, pW, dH, dW,
    KH: tl.constexpr, KW: tl.constexpr, TP: tl.constexpr, HAS_KB: tl.constexpr,
    LOW_DOT: tl.constexpr, PREC: tl.constexpr, PREC_B: tl.constexpr, FAST_TANH: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    # grid: (O * Cg, S); block index = o * Cg + c.
    T: tl.constexpr = KH * KW
    L = Ho * Wo
    oc = tl.program_id(0).to(tl.int64)
    sp = tl.program_id(1)
    o = oc // Cg
    c = oc % Cg
    cin = (o // Og) * Cg + c

    taps = tl.arange(0, TP)
    tmask = taps < T
    qmask = tmask[:, None] & tmask[None, :]
    wt = tl.load(w_ptr + oc * T * T + taps[None, :] * T + taps[:, None], mask=qmask, other=0.0)  # [ab, uv]
    if not LOW_DOT:
        wt = wt.to(tl.float32)
    if HAS_KB:
        kb = tl.load(kb_ptr + oc * T + taps, mask=tmask, other=0.0).to(tl.float32)

    n_pt = tl.cdiv(L, BLOCK_P)
    total = N * n_pt
    per = tl.cdiv(total, S)
    start = sp * per
    end = tl.minimum(start + per, total)
    acc_w = tl.zeros((TP, TP), dtype=tl.float32)  # [uv, ab]
    acc_b = tl.zeros((TP,), dtype=tl.float32)
    for item in range(start, end):
        n = item // n_pt
        offs_p = (item % n_pt) * BLOCK_P + tl.arange(0, BLOCK_P)
        pmask = offs_p < L
        hb, wb = _origin(offs_p, Wo, sH, sW, pH, pW)
        xoff, xmask = _patch(hb, wb, pmask, taps, H, W, dH, dW, KW, T)
        xp = tl.load(x_ptr + (n.to(tl.int64) * C + cin) * H * W + xoff, mask=xmask, other=0.0)
        xf = xp.to(tl.float32)
        if not LOW_DOT:
            xp = xf
        go = tl.load(go_ptr + (n.to(tl.int64) * O + o) * L + offs_p, mask=pmask, other=0.0).to(tl.float32)
        s = tl.dot(xp, wt, input_precision=PREC, out_dtype=tl.float32)
        if HAS_KB:
            s += kb[None, :]
        _, dt = _tanh_d(s, FAST_TANH)
        dsig = go[:, None] * dt * xf  # [p, uv]
        acc_w += tl.dot(tl.trans(dsig), xf, input_precision=PREC_B, out_dtype=tl.float32)
        acc_b += tl.sum(dsig, axis=0)
    slot = sp.to(tl.int64) * O * Cg + oc
    tl.store(wsw_ptr + slot * T * T + taps[:, None] * T + taps[None, :], acc_w, mask=qmask)
    tl.store(wsb_ptr + slot * T + taps, acc_b, mask=tmask)
