"""SPEC section 1 as plain float64 loops: forward and every gradient, written
from the formulas (not from autograd), to check the reference and the fused
backends independently. For small shapes only."""

import math

import numpy as np


def _geometry(x, w, stride, padding, dilation, groups):
    N, C, H, W = x.shape
    O, Cg, kH, kW = w.shape[:4]
    (sH, sW), (pH, pW), (dH, dW) = stride, padding, dilation
    Ho = (H + 2 * pH - dH * (kH - 1) - 1) // sH + 1
    Wo = (W + 2 * pW - dW * (kW - 1) - 1) // sW + 1
    return N, C, H, W, O, Cg, kH, kW, sH, sW, pH, pW, dH, dW, Ho, Wo, O // groups


def _taps(n, c_abs, i, j, geo):
    """Input coordinates and values X[n, c', i, j, a, b] (flattened over (a, b))."""
    _, _, H, W, _, _, kH, kW, sH, sW, pH, pW, dH, dW, _, _, _ = geo
    coords = []
    for a in range(kH):
        for b in range(kW):
            r, s = i * sH - pH + a * dH, j * sW - pW + b * dW
            coords.append((r, s) if 0 <= r < H and 0 <= s < W else None)
    return coords


def loop_forward_backward(x, w, kb, bias, gy, stride, padding, dilation, groups):
    """Returns y and (dx, dQ, dbeta, dbias) for upstream gradient gy (numpy float64)."""
    geo = _geometry(x, w, stride, padding, dilation, groups)
    N, C, H, W, O, Cg, kH, kW, *_, Ho, Wo, Og = geo
    T = kH * kW
    y = np.zeros((N, O, Ho, Wo))
    dx = np.zeros_like(x)
    dQ = np.zeros_like(w)
    dbeta = np.zeros((O, Cg, kH, kW))
    dbias = gy.sum(axis=(0, 2, 3)) if gy is not None else None
    for n in range(N):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    acc = 0.0 if bias is None else float(bias[o])
                    g = None if gy is None else gy[n, o, i, j]
                    for c in range(Cg):
                        c_abs = (o // Og) * Cg + c
                        coords = _taps(n, c_abs, i, j, geo)
                        X = [x[n, c_abs, rc[0], rc[1]] if rc else 0.0 for rc in coords]
                        Q = w[o, c].reshape(T, T)
                        beta = np.zeros(T) if kb is None else kb[o, c].reshape(T)
                        for uv in range(T):
                            sigma = beta[uv] + sum(Q[uv, ab] * X[ab] for ab in range(T))
                            t = math.tanh(sigma)
                            acc += t * X[uv]
                            if g is None:
                                continue
                            dsig = g * X[uv] * (1.0 - t * t)
                            dbeta[o, c].flat[uv] += dsig
                            for ab in range(T):
                                dQ[o, c].reshape(T, T)[uv, ab] += dsig * X[ab]
                            # direct term, then the term through the kernel
                            if coords[uv]:
                                dx[n, c_abs, coords[uv][0], coords[uv][1]] += g * t
                            for ab in range(T):
                                if coords[ab]:
                                    dx[n, c_abs, coords[ab][0], coords[ab][1]] += dsig * Q[uv, ab]
                    y[n, o, i, j] = acc
    return y, (dx, dQ, dbeta, dbias)
