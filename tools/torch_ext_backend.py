"""PEP 517 build backend: setuptools, building against the torch that is already
installed in the target environment.

A C++/CUDA extension must be compiled against the exact torch it will load
into. pip's isolated build environment has no torch, and listing torch in
build-system.requires would download a different one (several GB of CUDA
wheels). So the isolated build is allowed to see the target environment's
site-packages, after its own, and nothing is downloaded for torch.
"""

import site
import sys
import sysconfig

def _target_site_packages():
    """The target environment's site-packages: a venv's own, then (for venvs made
    with --system-site-packages) the base interpreter's, then the user site."""
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    for paths in (sysconfig.get_paths(), sysconfig.get_paths(vars=base)):
        yield paths["purelib"]
        yield paths["platlib"]
    yield site.getusersitepackages()


try:
    import torch  # noqa: F401
except ImportError:
    for path in _target_site_packages():
        if path not in sys.path:
            sys.path.append(path)
        try:
            import torch  # noqa: F401

            break
        except ImportError:
            continue
    else:
        raise RuntimeError(
            "adaptive_conv_ext builds against an installed PyTorch: install torch first "
            "(e.g. `pip install torch==2.13.0` for the CPU build), then `pip install .`"
        )

from setuptools.build_meta import *  # noqa: E402,F401,F403
