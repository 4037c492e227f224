"""Timing and peak-memory measurement of one implementation on one case."""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch

from . import impls as I
from ._memchild import child_main
from .runner import Runner, is_oom, short  # noqa: F401 - re-exported for suite.py
from .shapes import Shape


@dataclass
class Options:
    device: str
    reps: int
    min_reps: int  # below this many repetitions within the budget: skipped
    warmup: int
    budget_s: float  # time allowed per implementation per case for the timed repetitions
    memory: bool = True
    mem_cap_mb: int = 0  # CPU only: cap each memory child's extra address space (emulates a smaller machine)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_calls(call: Callable[[], None], setup: Callable[[], None], reps: int, device: str,
               deadline: Optional[float] = None, min_reps: int = 1) -> List[float]:
    """Seconds per call; `setup` (e.g. clearing .grad) runs outside the timed region.
    Past `deadline` (time.perf_counter()), stops early once `min_reps` calls are done."""
    out = []
    for _ in range(reps):
        if deadline is not None and len(out) >= min_reps and time.perf_counter() > deadline:
            break
        setup()
        if device == "cuda":
            torch.cuda.synchronize()  # nothing of the previous call may leak into this one
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            call()
            out.append(time.perf_counter() - t0)
    return out


# ---------------------------------------------------------------- memory

def gpu_peak(call: Callable[[], None], setup: Callable[[], None]) -> int:
    """max_memory_allocated above what is allocated before the call (the inputs)."""
    setup()
    gc.collect()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    call()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


_CTX = None


def _context():
    """A fork server with torch and the benchmark code imported: each child is a fork
    of it (fresh memory map, no import time), not of this big process."""
    global _CTX
    if _CTX is None:
        import multiprocessing as mp

        _CTX = mp.get_context("forkserver")
        _CTX.set_forkserver_preload(["benchmarks._memchild"])
    return _CTX


def cpu_peak_child(shape: Shape, n: int, dtype: str, impl: str, warm_fwdbwd: bool, timeout_s: float,
                   mem_cap_mb: int = 0, input_grad: bool = True) -> dict:
    """Peak RSS above the inputs, measured in a child process running `impl` alone.

    Returns {"status": "ok", "fwd_bytes", "fwdbwd_bytes", ...} or {"status": "oom"|"skipped"|"error", "reason"}.
    """
    spec = dict(shape=shape.name, n=n, dtype=dtype, impl=impl, warm_fwdbwd=warm_fwdbwd, mem_cap_mb=mem_cap_mb,
                input_grad=input_grad)
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child_main, args=(spec, send), daemon=True)
    proc.start()
    send.close()  # the child holds the only writer: EOF once it exits
    result = None
    try:
        if recv.poll(timeout_s):
            result = recv.recv()
    except EOFError:
        pass  # died without a word: killed, see the exit code
    proc.join(5 if result is not None else 0.1)
    if proc.is_alive():
        proc.kill()
        proc.join()
        if result is None:
            return {"status": "skipped", "reason": f"memory child ran past its {timeout_s:.0f} s limit"}
    if result is not None:
        return result
    code = proc.exitcode
    if code is not None and code < 0:
        # SIGKILL is what the kernel's OOM killer sends
        return {"status": "oom" if -code == 9 else "error", "reason": f"memory child killed by signal {-code}"}
    return {"status": "error", "reason": f"memory child exited with {code} without a result"}


# ---------------------------------------------------------------- one implementation

def _paper_estimate(shape: Shape, inp, opts: Options) -> dict:
    """Time the paper's loop on a few output channels and scale by O (its cost is linear in O)."""
    o_sub = max(1, I.PAPER_DIRECT_PAIRS // shape.C)
    fn, leaves, grad_out = I.paper_subset(inp, o_sub)
    run = Runner(fn, leaves[1:], grad_out)
    run.fwd()  # warm-up
    t_f = min(time_calls(run.fwd, lambda: None, 1, opts.device))
    t_fb = min(time_calls(run.fwdbwd, run.clear, 1, opts.device))
    scale = shape.O / o_sub
    return {"o_sub": o_sub, "est_fwd_s": t_f * scale, "est_fwdbwd_s": t_fb * scale}


def bench_impl(impl: str, shape: Shape, n: int, dtype: str, inp, opts: Options) -> dict:
    res: dict = {"impl": impl, "label": I.LABELS[impl], "status": "ok"}
    reason = I.unavailable_reason(impl, shape, opts.device)
    if reason is not None:
        return {**res, "status": "skipped", "reason": reason}

    if impl == "paper" and shape.O * shape.C > I.PAPER_DIRECT_PAIRS:
        try:
            est = _paper_estimate(shape, inp, opts)
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            return {**res, "status": "oom" if is_oom(exc) else "error", "reason": short(exc)}
        res["estimate"] = est
        per_rep = est["est_fwd_s"] + est["est_fwdbwd_s"]
        if per_rep * opts.min_reps > opts.budget_s:
            res.update(status="skipped", reason=(
                f"Python loop over O*C={shape.O * shape.C} pairs: est. {est['est_fwd_s']:.1f} s fwd + "
                f"{est['est_fwdbwd_s']:.1f} s fwd+bwd per call (timed on {est['o_sub']} of {shape.O} output "
                f"channels, scaled); {opts.min_reps} reps exceed the {opts.budget_s:.0f} s budget"))
            return res

    # CPU: the memory child runs first, so an implementation that would exhaust the
    # machine's memory is found (and killed) in the child, not in this process.
    if opts.device == "cpu" and opts.memory:
        # warm-up in the child: always, except a big eager reference or paper loop (slow, and
        # their one-time allocations are nothing beside their peak)
        warm = impl not in ("reference", "paper") or shape.tanh_evals(n) < 20_000_000
        mem = cpu_peak_child(shape, n, dtype, impl, warm, timeout_s=2 * opts.budget_s + 180,
                             mem_cap_mb=opts.mem_cap_mb, input_grad=inp["x"].requires_grad)
        res["memory"] = mem
        if mem["status"] != "ok":
            res.update(status=mem["status"], reason=mem["reason"])
            return res

    try:
        fn, params = I.build(impl, shape, inp)
        run = Runner(fn, params, inp["grad_out"])
        warmup = max(opts.warmup, 2 if impl == "compiled" else 1)  # compiled: the 1st call compiles
        t_first = None
        for i in range(warmup):
            t_f = time_calls(run.fwd, lambda: None, 1, opts.device)[0]
            t_fb = time_calls(run.fwdbwd, run.clear, 1, opts.device)[0]
            if i == 0:
                t_first = t_f + t_fb
            if impl != "compiled" or i > 0:
                if (t_f + t_fb) * opts.min_reps > opts.budget_s:
                    break  # far too slow already: no point warming up further
        res["first_call_s"] = t_first
        per_rep = t_f + t_fb
        reps = min(opts.reps, int(opts.budget_s // per_rep)) if per_rep > 0 else opts.reps
        if reps < opts.min_reps:
            res.update(status="skipped", single_fwd_s=t_f, single_fwdbwd_s=t_fb, reason=(
                f"one fwd ({t_f:.2f} s) + one fwd+bwd ({t_fb:.2f} s) per rep: {opts.min_reps} reps exceed "
                f"the {opts.budget_s:.0f} s budget"))
            return res
        if reps < opts.reps:
            res["note"] = f"{reps} reps (not {opts.reps}): {opts.reps} would exceed the {opts.budget_s:.0f} s budget"
        # The warm-up's per-rep time may be a lucky one (a shared machine): each loop also
        # stops at 1.5x its share of the budget, keeping at least min_reps.
        grace, per_rep = 1.5 * opts.budget_s, max(per_rep, 1e-9)
        tf = time_calls(run.fwd, lambda: None, reps, opts.device,
                        deadline=time.perf_counter() + grace * t_f / per_rep, min_reps=opts.min_reps)
        tfb = time_calls(run.fwdbwd, run.clear, reps, opts.device,
                         deadline=time.perf_counter() + grace * t_fb / per_rep, min_reps=opts.min_reps)
        if min(len(tf), len(tfb)) < reps:
            res["note"] = (f"{len(tf)}/{len(tfb)} reps (fwd/fwd+bwd), not {opts.reps}: stopped at 1.5x "
                           f"the {opts.budget_s:.0f} s budget, the calls ran slower than in the warm-up")
        res.update(reps=min(len(tf), len(tfb)), reps_fwd=len(tf), reps_fwdbwd=len(tfb),
                   fwd_s=statistics.median(tf), fwdbwd_s=statistics.median(tfb),
                   fwd_min_s=min(tf), fwdbwd_min_s=min(tfb))
        res["_output"] = run.last  # removed before the JSON is written
        if opts.device == "cuda" and opts.memory:
            try:
                res["memory"] = {"status": "ok", "method": "torch.cuda.max_memory_allocated - allocated before",
                                 "fwd_bytes": gpu_peak(run.fwd, lambda: None),
                                 "fwdbwd_bytes": gpu_peak(run.fwdbwd, run.clear)}
            except Exception as exc:  # noqa: BLE001
                res["memory"] = {"status": "oom" if is_oom(exc) else "error", "reason": short(exc)}
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        res.update(status="oom" if is_oom(exc) else "error", reason=short(exc))
        res.pop("_output", None)
    finally:
        if opts.device == "cuda":
            torch.cuda.empty_cache()
    return res
