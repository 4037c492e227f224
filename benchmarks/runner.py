"""What both sides of a measurement share: the calls of one implementation, and how
a failure is told apart and summarised. measure.py (the parent) and _memchild.py
(the child process of the CPU memory measurement) both import this module; the
dependency runs one way, parent -> child -> here."""

from __future__ import annotations

import torch


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    msg = str(exc)
    # the CPU allocator raises a plain RuntimeError when malloc fails
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in msg or "out of memory" in msg.lower())


def short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Runner:
    """The forward-only and forward+backward calls of one implementation."""

    def __init__(self, fn, params, grad_out):
        self.fn, self.params, self.grad_out = fn, params, grad_out
        self.last = None  # the last forward output, for the cross-check of results

    def clear(self) -> None:
        for p in self.params:
            p.grad = None

    def fwd(self) -> None:
        # forward alone = inference: no autograd graph is recorded
        with torch.no_grad():
            self.last = self.fn()

    def fwdbwd(self) -> None:
        y = self.fn()
        y.backward(self.grad_out)
