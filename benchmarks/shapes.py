"""The benchmark cases: SPEC section 3, plus the acceptance case of issue 2."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

# How a case whose forward+backward differs from "every gradient" is labelled (SPEC section 3).
GRADS_TRAINING_FIRST_LAYER = "no input grad (first layer, as trained)"
GRADS_ALL = "all grads (input's too)"


@dataclass(frozen=True)
class Shape:
    name: str
    N: int  # batch as in the SPEC (used on a GPU)
    C: int
    O: int
    H: int  # H = W in every case
    k: int
    pad: int
    groups: int
    source: str
    cpu_N: int  # batch on a CPU: scaled down so each case runs in seconds (SPEC section 3)
    fixed_N: bool = False  # an acceptance case: its N is part of its definition, never scaled
    # SPEC section 3: whether training needs the input's gradient. A first layer's input
    # never requires grad, so its forward+backward computes the parameters' gradients only.
    input_grad: bool = True

    @property
    def W(self) -> int:
        return self.H

    def out_size(self) -> int:
        return self.H + 2 * self.pad - (self.k - 1)  # stride 1, dilation 1 everywhere

    def batch(self, device: str, quick: bool, override: int = 0) -> int:
        if self.fixed_N:
            return self.N
        if override:
            return override
        if quick:
            return 1
        return self.N if device == "cuda" else self.cpu_N

    def tanh_evals(self, n: int) -> int:
        """N*O*(C/g)*kH*kW*Ho*Wo: the size of sigma and K (SPEC section 1)."""
        ho = self.out_size()
        return n * self.O * (self.C // self.groups) * self.k * self.k * ho * ho

    def grad_variants(self) -> List[Tuple[bool, str]]:
        """(input_grad, label) of each forward+backward this shape is run with (SPEC
        section 3): the gradients training needs, then all of them where the two differ."""
        if self.input_grad:
            return [(True, "")]
        return [(False, GRADS_TRAINING_FIRST_LAYER), (True, GRADS_ALL)]

    def dims(self) -> Dict[str, int]:
        return dict(C=self.C, O=self.O, H=self.H, W=self.W, k=self.k, pad=self.pad, groups=self.groups)


# cpu_N: picked on a 2-core AMD EPYC so that the slowest per-call implementation
# (the eager reference) still fits 20 repetitions in about a minute or two per case;
# mid-64 is already too big at N=1 for that (see the budget in suite.py).
SPEC_SHAPES: List[Shape] = [
    Shape("lenet-mnist", 256, 1, 6, 28, 5, 2, 1, "the paper's MNIST layer", cpu_N=32,
          input_grad=False),
    Shape("resnet-stem", 128, 3, 16, 32, 3, 1, 1, "the authors' ResNet18 stem on CIFAR-10",
          cpu_N=16, input_grad=False),
    Shape("mid-64", 32, 64, 64, 56, 3, 1, 1, "a ResNet stage-1 conv replaced", cpu_N=1),
    Shape("depthwise-256", 32, 256, 256, 56, 3, 1, 256, "depthwise variant", cpu_N=2),
    Shape("depthwise-k7", 32, 128, 128, 28, 7, 3, 128, "large kernel, depthwise", cpu_N=2),
]

# Issue 2's acceptance case (fused CPU vs the eager reference), float32 on the CPU.
ISSUE2 = Shape("issue2-cpu", 2, 32, 32, 40, 3, 1, 1, "issue 2 acceptance (CPU)", cpu_N=2, fixed_N=True)

SHAPES: Dict[str, Shape] = {s.name: s for s in SPEC_SHAPES + [ISSUE2]}
DEFAULT_SHAPES = [s.name for s in SPEC_SHAPES]
# --quick: every code path, not every size. mid-64 is left out because its eager
# reference alone takes ~10-20 s per forward+backward at N=1 on 2 cores.
QUICK_SHAPES = ["lenet-mnist", "resnet-stem", "depthwise-256", "depthwise-k7"]
