"""Checkpoint conversion between the paper's per-pair generators and this library.

The authors' code keeps, for every pair (output o, input c), one generator
``nn.Conv2d(1, k*k, k, padding=k//2)`` (SPEC section 1, "The paper's own layout").
Its weight (k*k, 1, k, k) and bias (k*k,) hold Q[o, c] and beta[o, c]; the mapping of
one pair is paper.generator_from_weight / paper.weight_from_generator, used here for
every pair.

Layouts handled:

* tensors: generator weights ``gen_weight`` (O, C, k*k, 1, k, k) and biases
  ``gen_bias`` (O, C, k*k), or the same as nested sequences [o][c] of (k*k, 1, k, k) /
  (k*k,) tensors, or nested sequences [o][c] of the ``nn.Conv2d`` generators themselves
  (e.g. an ``nn.ModuleList`` of ``nn.ModuleList``);
* state dicts, under a key prefix (e.g. "generators", or "layer1.generators"; "" for
  the state dict of a bare ModuleList):
  - nested: ``<prefix>.<o>.<c>.weight`` / ``<prefix>.<o>.<c>.bias``, what an
    ``nn.ModuleList`` (over o) of ``nn.ModuleList`` (over c) of generators produces;
  - flat: ``<prefix>.<i>.weight`` / ``<prefix>.<i>.bias`` with i = o * C + c, what a
    single ``nn.ModuleList`` of O*C generators, output-major, produces.

C is the input channels per group (C/groups; the paper uses groups=1). The paper's layer
has no output bias: load the result into AdaptiveConv2d(..., bias=False) or zero the bias.
"""

from __future__ import annotations

import re
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .paper import generator_from_weight, weight_from_generator

Nested = Union[torch.Tensor, Sequence]

__all__ = [
    "weight_from_paper",
    "weight_to_paper",
    "weight_from_paper_state_dict",
    "weight_to_paper_state_dict",
]


def _grid(value: Nested, name: str):
    """A tensor (O, C, ...) or nested [o][c] sequence -> list of rows of entries."""
    if isinstance(value, torch.Tensor):
        if value.dim() < 2:
            raise ValueError(f"{name} must be at least 2-D (O, C, ...), got shape {tuple(value.shape)}")
        return [list(row.unbind(0)) for row in value.unbind(0)]
    rows = [list(row) for row in value]
    if not rows or any(len(row) != len(rows[0]) or not row for row in rows):
        raise ValueError(f"{name} must be a non-empty [O][C] grid with the same C in every row")
    return rows


def weight_from_paper(
    gen_weight: Nested, gen_bias: Optional[Nested] = None
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Per-pair generators -> (weight (O, C, k, k, k, k), kernel_bias (O, C, k, k) or None).

    ``gen_weight``: (O, C, k*k, 1, k, k), or [o][c] of (k*k, 1, k, k) tensors, or [o][c]
    of ``nn.Conv2d(1, k*k, k)`` modules (their biases are then used; leave ``gen_bias``
    None). ``gen_bias``: (O, C, k*k) or [o][c] of (k*k,) tensors, or None (no biases).
    """
    rows = _grid(gen_weight, "gen_weight")
    if isinstance(rows[0][0], nn.Conv2d):
        if gen_bias is not None:
            raise ValueError("gen_bias must be None when the generators are nn.Conv2d modules")
        with_bias = [[m.bias is not None for m in row] for row in rows]
        if len({b for row in with_bias for b in row}) != 1:
            raise ValueError("either every generator has a bias or none has")
        bias_rows = [[m.bias for m in row] for row in rows] if with_bias[0][0] else None
        rows = [[m.weight for m in row] for row in rows]
    else:
        bias_rows = None if gen_bias is None else _grid(gen_bias, "gen_bias")
    O, C = len(rows), len(rows[0])
    if bias_rows is not None and (len(bias_rows), len(bias_rows[0])) != (O, C):
        raise ValueError(f"gen_bias must have [O][C] = [{O}][{C}] entries like gen_weight")

    k = rows[0][0].shape[-1]
    weights, biases = [], []
    for o in range(O):
        for c in range(C):
            w = rows[o][c].detach()
            if tuple(w.shape) != (k * k, 1, k, k):
                raise ValueError(
                    f"generator ({o}, {c}) weight must be (k*k, 1, k, k) = {(k * k, 1, k, k)}, "
                    f"got {tuple(w.shape)}"
                )
            b = None if bias_rows is None else bias_rows[o][c].detach()
            if b is not None and tuple(b.shape) != (k * k,):
                raise ValueError(f"generator ({o}, {c}) bias must be ({k * k},), got {tuple(b.shape)}")
            w, b = weight_from_generator(w, b)
            weights.append(w)
            biases.append(b)
    weight = torch.stack(weights).reshape(O, C, k, k, k, k)
    kernel_bias = None if bias_rows is None else torch.stack(biases).reshape(O, C, k, k)
    return weight, kernel_bias


def weight_to_paper(
    weight: torch.Tensor, kernel_bias: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(weight (O, C, k, k, k, k), kernel_bias (O, C, k, k) or None) -> generator weights
    (O, C, k*k, 1, k, k) and biases (O, C, k*k) or None. Inverse of weight_from_paper."""
    if weight.dim() != 6 or len(set(weight.shape[2:])) != 1:
        raise ValueError(f"weight must be (O, C, k, k, k, k) with a square kernel, got {tuple(weight.shape)}")
    O, C, k = weight.shape[:3]
    if kernel_bias is not None and tuple(kernel_bias.shape) != (O, C, k, k):
        raise ValueError(f"kernel_bias must be (O, C, k, k) = {(O, C, k, k)}, got {tuple(kernel_bias.shape)}")
    pairs = [
        generator_from_weight(weight[o, c].detach(), None if kernel_bias is None else kernel_bias[o, c].detach())
        for o in range(O)
        for c in range(C)
    ]
    gen_weight = torch.stack([w for w, _ in pairs]).reshape(O, C, k * k, 1, k, k)
    gen_bias = None if kernel_bias is None else torch.stack([b for _, b in pairs]).reshape(O, C, k * k)
    return gen_weight, gen_bias


def weight_from_paper_state_dict(
    state_dict: Mapping[str, torch.Tensor], prefix: str, in_channels: Optional[int] = None
) -> Dict[str, torch.Tensor]:
    """{"weight", "kernel_bias"} for AdaptiveConv2d.load_state_dict(..., strict=False)
    from the generators under ``prefix`` (nested or flat keys, see the module docstring).

    The layout is read from the keys. Flat keys need ``in_channels`` (C per group);
    for nested keys it is optional and checked if given.
    """
    head = re.escape(prefix) + r"\." if prefix else ""  # "" for a bare ModuleList's state dict
    pattern = re.compile(head + r"(\d+)(?:\.(\d+))?\.(weight|bias)")
    found = {}
    for key, value in state_dict.items():
        match = pattern.fullmatch(key)
        if match:
            first, second, kind = match.groups()
            found[(int(first), None if second is None else int(second), kind)] = value
    if not found:
        raise KeyError(f"no generator keys '{prefix}.<o>.<c>.weight' or '{prefix}.<i>.weight' in the state dict")
    nested = {second is not None for _, second, _ in found}
    if len(nested) != 1:
        raise ValueError(f"keys under '{prefix}' mix the nested and the flat layout")
    if nested.pop():
        pairs = {(o, c) for o, c, _ in found}
        O, C = max(o for o, _ in pairs) + 1, max(c for _, c in pairs) + 1
        if in_channels is not None and in_channels != C:
            raise ValueError(f"in_channels={in_channels} but the state dict has {C} generators per output")
        index = lambda o, c: (o, c)  # noqa: E731
    else:
        if in_channels is None:
            raise ValueError(f"the flat layout '{prefix}.<o*C + c>.weight' needs in_channels (C per group)")
        count = max(i for i, _, _ in found) + 1
        if count % in_channels:
            raise ValueError(f"{count} generators is not a multiple of in_channels={in_channels}")
        O, C = count // in_channels, in_channels
        index = lambda o, c: (o * C + c, None)  # noqa: E731
    with_bias = any(kind == "bias" for _, _, kind in found)

    def entry(o, c, kind):
        key = index(o, c) + (kind,)
        if key not in found:
            name = ".".join(str(v) for v in (prefix or None, *key[:2], kind) if v is not None)
            raise KeyError(f"missing '{name}' in the state dict")
        return found[key]

    gen_weight = [[entry(o, c, "weight") for c in range(C)] for o in range(O)]
    gen_bias = [[entry(o, c, "bias") for c in range(C)] for o in range(O)] if with_bias else None
    weight, kernel_bias = weight_from_paper(gen_weight, gen_bias)
    out = {"weight": weight}
    if kernel_bias is not None:
        out["kernel_bias"] = kernel_bias
    return out


def weight_to_paper_state_dict(
    weight: torch.Tensor, kernel_bias: Optional[torch.Tensor] = None, prefix: str = "generators", flat: bool = False
) -> Dict[str, torch.Tensor]:
    """The paper's state-dict entries for this library's weight and kernel_bias: nested
    keys ``<prefix>.<o>.<c>.weight``, or with ``flat=True`` ``<prefix>.<o*C + c>.weight``.
    Inverse of weight_from_paper_state_dict."""
    gen_weight, gen_bias = weight_to_paper(weight, kernel_bias)
    O, C = gen_weight.shape[:2]
    out = {}
    for o in range(O):
        for c in range(C):
            name = f"{o * C + c}" if flat else f"{o}.{c}"
            name = f"{prefix}.{name}" if prefix else name
            out[f"{name}.weight"] = gen_weight[o, c].clone()
            if gen_bias is not None:
                out[f"{name}.bias"] = gen_bias[o, c].clone()
    return out
