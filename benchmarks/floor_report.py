"""`python -m benchmarks --floors`: the static model's expected percentage of the SPEC
section 4 floor per SPEC shape and dtype on an H100/H200 (sm_90), without a GPU.

The model (benchmarks/static_model.py) reads the sm_90 SASS of the CUDA kernels. The
objects come from --sass-obj (the sm_90 objects of adaptive_conv2d_kernels{,_f16,_bf16}.cu,
as .ci/compile_cuda.sh builds them) or are built here with nvcc into a cache directory
keyed by the kernel sources, the nvcc version and the flags (reused while they match).
Needs nvcc (to build) and cuobjdump (CUDA's, or the one triton's wheel bundles).
Nothing here is a measurement.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional

from . import static_model

ROOT = Path(__file__).resolve().parents[1]
CUDA_DIR = ROOT / "csrc" / "ops" / "cuda"
# float64 is there for correctness only: the model does not cover it.
SOURCES = ["adaptive_conv2d_kernels.cu", "adaptive_conv2d_kernels_f16.cu", "adaptive_conv2d_kernels_bf16.cu"]
NVCC_FLAGS = ["-std=c++17", "-O3", "-gencode", "arch=compute_90,code=sm_90"]  # as .ci/compile_cuda.sh
DEFAULT_CACHE = ROOT / "build" / "sass_model"


class ToolMissing(RuntimeError):
    """nvcc or cuobjdump is not installed where we look."""


def _cuda_home_tool(name: str) -> Optional[str]:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and os.access(os.path.join(home, "bin", name), os.X_OK):
        return os.path.join(home, "bin", name)
    return shutil.which(name)


def find_nvcc() -> str:
    path = _cuda_home_tool("nvcc")
    if not path:
        raise ToolMissing("nvcc not found (looked in $CUDA_HOME/bin and on PATH): it builds the sm_90 objects "
                          "the static model reads; install the CUDA toolkit, or pass the objects with --sass-obj")
    return path


def find_cuobjdump() -> str:
    """CUDA's cuobjdump, else the one in triton's wheel (CUDA 13.0 installs may lack it)."""
    path = _cuda_home_tool("cuobjdump")
    if path:
        return path
    try:
        import triton

        bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    raise ToolMissing("cuobjdump not found ($CUDA_HOME/bin, PATH, triton's wheel): it disassembles the sm_90 "
                      "objects for the static model; install the CUDA toolkit or `pip install nvidia-cuda-cuobjdump`")


def _cache_key(nvcc: str) -> str:
    h = hashlib.sha256()
    h.update(subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout.encode())
    h.update(" ".join(NVCC_FLAGS).encode())
    for f in sorted(CUDA_DIR.rglob("*")):
        if f.is_file() and f.suffix in (".cu", ".cuh", ".h"):
            h.update(str(f.relative_to(CUDA_DIR)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def build_objects(cache_dir: Path = DEFAULT_CACHE, jobs: int = 2) -> List[str]:
    """The sm_90 objects of SOURCES, built with nvcc unless the cache has them for these sources."""
    nvcc = find_nvcc()
    out = Path(cache_dir) / _cache_key(nvcc)
    objs = [out / (Path(s).stem + ".o") for s in SOURCES]
    missing = [(s, o) for s, o in zip(SOURCES, objs) if not o.exists()]
    if missing:
        out.mkdir(parents=True, exist_ok=True)
        print(f"floors: building {len(missing)} sm_90 object(s) with {nvcc} into {out} (about a minute)",
              file=sys.stderr)

        def compile_one(item):
            src, obj = item
            fd, tmp = tempfile.mkstemp(suffix=".o", dir=out)  # renamed when whole: no half-written cache
            os.close(fd)
            r = subprocess.run([nvcc, *NVCC_FLAGS, f"-I{ROOT / 'csrc'}", "-c", str(CUDA_DIR / src), "-o", tmp],
                               capture_output=True, text=True)
            if r.returncode != 0:
                os.unlink(tmp)
                raise RuntimeError(f"nvcc failed on {src}:\n{r.stderr[-4000:]}")
            os.replace(tmp, obj)

        with ThreadPoolExecutor(max(1, jobs)) as pool:
            list(pool.map(compile_one, missing))
    return [str(o) for o in objs]


def report(objs: Optional[List[str]] = None, cache_dir: Optional[str] = None) -> List[dict]:
    """Rows of the floor report (static_model.floor_rows) for the given or built objects."""
    cuobjdump = find_cuobjdump()
    if not objs:
        jobs = int(os.environ.get("COMPILE_CUDA_JOBS", "2"))
        objs = build_objects(Path(cache_dir) if cache_dir else DEFAULT_CACHE, jobs)
    for o in objs:
        if not os.path.isfile(o):
            raise FileNotFoundError(f"--sass-obj {o}: no such file")
    return static_model.floor_rows(static_model.read_sass(cuobjdump, objs))


def markdown(rows: List[dict]) -> str:
    def pct(v) -> str:
        return f"{v:.0f}%" if v is not None else "-"

    out = ["Static model (benchmarks/static_model.py), H100/H200 (sm_90): expected % of the SPEC section 4 "
           "floor, an upper bound from the SASS instruction mix of the kernel the planner runs; not a measurement. "
           "'model' counts the kernel's shared-memory staging per round where the model has it (the tensor-core "
           "forward), else it equals 'loop only' (the innermost loop's instruction mix).",
           "", "| shape | dtype | pass | kernel | model: % of floor | loop only |", "|---|---|---|---|---:|---:|"]
    for r in rows:
        out.append(f"| {r['shape']} | {r['dtype']} | {r['pass']} | `{r.get('kernel') or '-'}` | "
                   f"{pct(r.get('pct_of_floor'))} | {pct(r.get('pct_loop_only', r.get('pct_of_floor')))} |")
    return "\n".join(out) + "\n"


def main(objs: Optional[List[str]] = None, cache_dir: Optional[str] = None) -> int:
    try:
        rows = report(objs, cache_dir)
    except (ToolMissing, FileNotFoundError, RuntimeError) as exc:
        print(f"python -m benchmarks --floors: {exc}", file=sys.stderr)
        return 2
    print(markdown(rows), end="")
    return 0
