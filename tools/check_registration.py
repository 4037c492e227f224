"""Checks a build of adaptive_conv_ext: every operator has CPU and Meta kernels, and
CUDA kernels too when the build was meant to have them (--expect-cuda); importing
works on this machine; on a machine with no GPU, available_backends('cuda') gives
a reason containing "no CUDA device" for native and triton, instead of usable (with
a CPU-only torch: a reason naming CUDA).

Used by .ci/cuda_build.sh (CUDA torch, no GPU) and scripts/gpu_session.sh (GPU).
Run it from outside the checkout so that the package under test is the one imported.
"""

from __future__ import annotations

import argparse
import sys

import torch
from check_abi_audit import finish  # this folder is sys.path[0]: both run as scripts

KEYS = ("CPU", "CUDA", "Meta")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--expect-cuda", action="store_true", help="require CUDA kernels for every op")
    args = p.parse_args(argv)

    import adaptive_conv_ext
    from adaptive_conv_ext import _native

    print(f"package: {adaptive_conv_ext.__file__}")
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}); CUDA devices: {torch.cuda.device_count()}")
    if _native.IMPORT_ERROR is not None:
        print(f"FAIL: adaptive_conv_ext._C did not load: {_native.IMPORT_ERROR}")
        return 1
    ops = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("adaptive_conv_ext::"))
    required = KEYS if args.expect_cuda else ("CPU", "Meta")
    errors = [] if ops else ["no adaptive_conv_ext operators are registered"]
    for op in ops:
        have = [k for k in KEYS if torch._C._dispatch_has_kernel_for_dispatch_key(op, k)]
        print(f"registered: {op}: {', '.join(have)}")
        errors += [f"{op} has no {k} kernel" for k in required if k not in have]

    reasons = adaptive_conv_ext.available_backends("cuda")
    for backend in ("native", "triton"):
        print(f"available_backends('cuda')[{backend!r}]: {reasons[backend]!r}")
    if torch.version.cuda is None:  # a CPU-only torch: the reason must say CUDA is missing
        for backend in ("native", "triton"):
            if "CUDA" not in str(reasons[backend]):
                errors.append(f"with a CPU-only torch, available_backends('cuda')[{backend!r}] should say "
                              f"why CUDA is unusable, got {reasons[backend]!r}")
    elif not torch.cuda.is_available():
        for backend in ("native", "triton"):
            if "no CUDA device" not in str(reasons[backend]):
                errors.append(f"with no GPU, available_backends('cuda')[{backend!r}] should say "
                              f"'no CUDA device', got {reasons[backend]!r}")
    elif args.expect_cuda and reasons["native"] is not None:
        errors.append(f"a GPU is present but native CUDA is unavailable: {reasons['native']}")
    return finish(errors, "registration check")


if __name__ == "__main__":
    sys.exit(main())
