"""`python -m benchmarks --floors`: the static model's expected percentage of the SPEC
section 4 floor per SPEC shape and dtype on an H100/H200 (sm_90), without a GPU.

The model (benchmarks/static_model.py) reads the sm_90 SASS of the CUDA kernels. The
objects come from --sass-obj (the sm_90 objects of kernels_{f32,f16,bf16}.cu,
as .ci/compile_cuda.sh builds them) or are built here with nvcc into a cache directory
keyed by the kernel sources, the nvcc version and the flags (reused while they match).
Which kernels run comes from the C++ planner, through the CPU emulation binary's `plan`
mode (built here with g++ into the same cache). Rows: per SPEC shape and dtype the forward;
per 16-bit dtype forward+backward with the gradients training needs (SPEC section 3) and,
where that differs (the first layers), with all of them; each names its kernels.
Needs nvcc (to build), g++ and cuobjdump (CUDA's, or the one triton's wheel bundles).
Nothing here is a measurement.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional

from . import sass, static_model
from .shapes import SPEC_SHAPES

ROOT = Path(__file__).resolve().parents[1]
CUDA_DIR = ROOT / "csrc" / "ops" / "cuda"
# float64 is there for correctness only: the model does not cover it.
SOURCES = ["kernels_f32.cu", "kernels_f16.cu", "kernels_bf16.cu"]
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
        if f.is_file() and f.suffix in (".cu", ".cuh", ".h", ".cpp"):
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


EMULATOR = CUDA_DIR / "testing" / "emulate_kernels.cpp"
CXX_FLAGS = ["-std=c++20", "-O1", "-pthread", "-Wno-unknown-pragmas", "-Wno-subobject-linkage"]  # as compile_cuda.sh


def _cuda_include(nvcc: str) -> str:
    """The CUDA headers the emulation compiles against (cuda_runtime.h, cuda_bf16.h)."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    for d in ([os.path.join(home, "include")] if home else []) + [
            os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), "include"), "/usr/local/cuda/include"]:
        if os.path.isfile(os.path.join(d, "cuda_runtime.h")):
            return d
    raise ToolMissing("no CUDA headers (cuda_runtime.h) next to nvcc, in $CUDA_HOME/include or /usr/local/cuda/include")


def build_planner(cache_dir: Path = DEFAULT_CACHE) -> str:
    """The CPU emulation binary, whose `plan` mode prints the C++ planner's decisions, built with
    g++ ($CXX) unless the cache has it for these sources."""
    nvcc = find_nvcc()
    out = Path(cache_dir) / _cache_key(nvcc)
    exe = out / "emulate"
    if not exe.exists():
        out.mkdir(parents=True, exist_ok=True)
        cxx = os.environ.get("CXX", "g++")
        if not shutil.which(cxx):
            raise ToolMissing(f"{cxx} not found: it builds the planner's host tool (the CPU emulation)")
        print(f"floors: building the planner's host tool with {cxx} into {out} (a minute or two)", file=sys.stderr)
        fd, tmp = tempfile.mkstemp(dir=out)
        os.close(fd)
        r = subprocess.run([cxx, *CXX_FLAGS, f"-I{_cuda_include(nvcc)}", f"-I{ROOT / 'csrc'}", str(EMULATOR),
                            "-o", tmp], capture_output=True, text=True)
        if r.returncode != 0:
            os.unlink(tmp)
            raise RuntimeError(f"{cxx} failed on {EMULATOR.name}:\n{r.stderr[-4000:]}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, exe)
    return str(exe)


def report(objs: Optional[List[str]] = None, cache_dir: Optional[str] = None,
           planner: Optional[str] = None) -> List[dict]:
    """Rows of the floor report (static_model.floor_rows) for the given or built objects and
    planner tool."""
    cuobjdump = find_cuobjdump()
    cache = Path(cache_dir) if cache_dir else DEFAULT_CACHE
    if not objs:
        jobs = int(os.environ.get("COMPILE_CUDA_JOBS", "2"))
        objs = build_objects(cache, jobs)
    for o in objs:
        if not os.path.isfile(o):
            raise FileNotFoundError(f"--sass-obj {o}: no such file")
    plans = static_model.read_plans(planner or build_planner(cache))
    return static_model.floor_rows(sass.read_sass(cuobjdump, objs), plans)


def markdown(rows: List[dict]) -> str:
    def pct(v) -> str:
        return f"{v:.0f}%" if v is not None else "-"

    out = ["Static model (benchmarks/static_model.py), H100/H200 (sm_90): expected % of the SPEC section 4 "
           "floor, an upper bound from the SASS instruction mix of the kernel the planner runs; not a measurement. "
           "'model' counts the kernel's shared-memory staging per round where the model has it (the tensor-core "
           "forward), else it equals 'loop only' (the innermost loop's instruction mix).",
           "", "| shape | dtype | pass | input grad | kernels (the C++ planner's) | model: % of floor | loop only |",
           "|---|---|---|---|---|---:|---:|"]
    for r in rows:
        grad = "-" if "input_grad" not in r else ("yes" if r["input_grad"] else "no")
        kernels = ", ".join(f"`{k}`" for k in r.get("kernels") or []) or "-"
        out.append(f"| {r['shape']} | {r['dtype']} | {r['pass']} | {grad} | {kernels} | "
                   f"{pct(r.get('pct_of_floor'))} | {pct(r.get('pct_loop_only', r.get('pct_of_floor')))} |")
    return "\n".join(out) + "\n"


def check_rows(rows: List[dict]) -> List[str]:
    """What the report must hold, as a list of problems (empty: fine): for every SPEC shape a
    forward row per dtype; per 16-bit dtype a forward+backward row with the gradients training
    needs and, where that differs, one with all of them; 16-bit rows on the tensor-core kernels
    the planner names (fwd_mma, bwd_mma<t, ks, tail, 3: all gradients / 2: weight only>), float32
    on the scalar forward; every percentage in (0, 100], staging never faster than the loop."""
    problems = []
    by_key = {(r["shape"], r["dtype"], r["pass"], r.get("input_grad")): r for r in rows}
    for shape in SPEC_SHAPES:
        train = static_model.training_input_grad(shape)
        for dtype, tname in (("bfloat16", "bf16"), ("float16", "half"), ("float32", "float")):
            wanted = [("forward", None, f"fwd_mma<{tname}, " if dtype != "float32" else f"fwd<{tname}, ")]
            if dtype != "float32":
                wanted += [("forward+backward", g, f"bwd_mma<{tname}, ") for g in sorted({train, True})]
            for pass_, grad, prefix in wanted:
                r = by_key.get((shape.name, dtype, pass_, grad))
                if r is None:
                    problems.append(f"{shape.name} {dtype} {pass_} input_grad={grad}: no row")
                    continue
                kernels = r.get("kernels") or []
                main = [k for k in kernels if k.startswith(prefix)]
                if len(main) != 1:
                    problems.append(f"{shape.name} {dtype} {pass_}: kernels {kernels}, want one {prefix}...>")
                elif pass_ == "forward+backward" and not main[0].endswith(", 3>" if grad else ", 2>"):
                    problems.append(f"{shape.name} {dtype} input_grad={grad}: {main[0]} computes other gradients")
                pct, loop = r.get("pct_of_floor"), r.get("pct_loop_only")
                if pct is None or loop is None or not 0 < pct <= loop <= 100:
                    problems.append(f"{shape.name} {dtype} {pass_} input_grad={grad}: % of floor {pct}, loop only {loop}")
    extra = len(rows) - len(by_key)
    if extra:
        problems.append(f"{extra} duplicate row(s)")
    return problems


def json_rows(rows: List[dict]) -> List[dict]:
    """What --json writes per row: the report's columns (the model's details stay out)."""
    keys = ("shape", "dtype", "pass", "input_grad", "kernels", "pct_of_floor", "pct_loop_only")
    return [{k: r[k] for k in keys if k in r} for r in rows]


def main(objs: Optional[List[str]] = None, cache_dir: Optional[str] = None, json_path: Optional[str] = None,
         planner: Optional[str] = None, check: bool = False) -> int:
    """Prints the report (and writes it as JSON); check: returns 1 when check_rows finds a problem."""
    try:
        rows = report(objs, cache_dir, planner)
    except (ToolMissing, FileNotFoundError, RuntimeError) as exc:
        print(f"python -m benchmarks --floors: {exc}", file=sys.stderr)
        return 2
    print(markdown(rows), end="")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"model": "benchmarks/static_model.py (sm_90 SASS, not a measurement)",
                       "device_limits": static_model.SM90_LIMITS, "rows": json_rows(rows)}, f, indent=1)
    problems = check_rows(rows) if check else []
    for p in problems:
        print(f"floors: FAIL {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    # `python -m benchmarks.floor_report --obj F --obj ... --planner EMULATE [--json OUT] [--check]`:
    # the report from objects and a planner tool built elsewhere (.ci/compile_cuda.sh); --check
    # exits 1 when check_rows finds a problem.
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--obj", action="append", default=[])
    ap.add_argument("--planner")
    ap.add_argument("--json")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    sys.exit(main(a.obj, json_path=a.json, planner=a.planner, check=a.check))
