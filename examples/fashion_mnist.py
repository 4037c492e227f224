"""The paper's claims on real 28x28 images: Fashion-MNIST, LeNet-5 against adaptive networks.

Zamora Esquivel et al. (ICCV-W 2019) report >99% on MNIST with 66x fewer parameters
than a LeNet base model, convergence in at least 2x fewer epochs, and (conclusion) 6x
fewer parameters for a 0.2% drop in accuracy. MNIST cannot be downloaded here;
Fashion-MNIST has the same format (60k/10k 28x28 grey images, 10 classes) and is harder.
examples/paper_claims.py checks the same claims on 8x8 digits; this file reuses its
seeding, device and plotting helpers.

Models, all trained the same way (Adam from one learning rate with one fixed schedule,
batch size and number of epochs for all, cross-entropy, the same data and batch order
per seed):

- ``lenet5``: the classic LeNet-5 (conv5x5 6 -> pool -> conv5x5 16 -> pool -> fc 120 ->
  fc 84 -> fc 10, ReLU, max-pool): 61,706 parameters.
- ``adaptive-*``: the paper's idea: AdaptiveConv2d layers (3x3; their tanh-generated
  kernels are the only nonlinearity), max-pooling, one linear layer as the head.
  ``adaptive-xs`` .. ``adaptive-l`` span about 60x to 3x fewer parameters than LeNet-5.
- ``plain-*``: controls: the same layout with nn.Conv2d + ReLU, widened to the same
  parameter count as the adaptive model of the same name.

The study (issue #30) trains to convergence: cosine decay of the learning rate to 0
over ``--epochs`` (15), fixed in advance; ``--n-val`` (5,000) class-balanced training
images, the same for every run, are held out, and the epoch with the best validation
accuracy selects the model; the test set selects nothing. Reported per model, over
seeds: final and validation-selected test accuracy, parameters, and for each of
``--targets`` (85%, 88%) the epochs, training CPU seconds and training wall seconds until
the test accuracy (measured ``--evals-per-epoch`` times per epoch) first reaches it.
CPU seconds come from the process clock (one thread), which neither other programs on
the machine nor a stopped process advance; wall seconds include both.

Runs continue where they stopped: each (model, seed) writes its checkpoint and JSON
after every epoch under ``--checkpoints`` (default: the untracked
results/fashion_mnist_convergence_runs), and a later call with the same settings resumes
each from its last finished epoch (``--restart`` discards them; ``--stop-after N``
stops each run after epoch N of the same schedule). One progress line per epoch, also
appended to progress.log there.

Run from the repository root: ``python -m examples.fashion_mnist`` (the full run:
60k/10k, 3 seeds, seed by seed; ``--jobs 2`` trains two runs at a time, one thread each),
or ``--quick`` (a subset, one seed, a few minutes). ``--schedule constant --n-val 0
--epochs 2 --evals-per-epoch 4 --targets 0.85`` trains as the earlier 2-epoch study did
(examples/results/fashion_mnist.json). The data: see examples/idx_data.py
(``--data-dir``, the Debian package dataset-fashion-mnist, or torchvision's download).
Writes ``fashion_mnist_convergence.json`` (after every finished run) and
``fashion_mnist_convergence.png`` under ``--out`` (default: the untracked results/; the
committed results change only with ``--out examples/results``).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from adaptive_conv_ext import AdaptiveConv2d

from . import idx_data
from .paper_claims import (DEFAULT_OUT, count_params, device_name, environment, resolve_device, save_figure,
                           set_determinism, train_step)

SEEDS = (0, 1, 2)
SCHEDULES = ("cosine", "constant")
VAL_SEED = 0  # the validation split is the same for every model and seed
LENET5_PARAMS = 61_706

# name: (kind, first-layer channels, second-layer channels, side of the pooled map the head sees)
# The widths of the plain controls are chosen so that each has (within 1%) the
# parameters of the adaptive model with the same suffix; test_fashion_mnist checks it.
FAMILY: Dict[str, Tuple[str, int, int, int]] = {
    "adaptive-xs": ("adaptive", 2, 3, 3),
    "adaptive-s": ("adaptive", 2, 8, 3),
    "adaptive-m": ("adaptive", 2, 12, 7),
    "adaptive-l": ("adaptive", 2, 32, 7),
    "plain-xs": ("plain", 5, 7, 3),
    "plain-s": ("plain", 5, 17, 3),
    "plain-m": ("plain", 6, 15, 7),
    "plain-l": ("plain", 7, 39, 7),
}
MODELS = ("lenet5", *FAMILY)


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling, as usually trained today."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),  # 14 -> 10 -> 5
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, n_classes)
        )

    def forward(self, x):
        return self.head(self.features(x))


class TwoLayerNet(nn.Module):
    """Two 3x3 layers (adaptive, or plain conv + ReLU), each followed by a 2x2 max-pool
    (28 -> 14 -> 7), an optional third pool (7 -> 3), and one linear layer."""

    def __init__(self, kind: str, c1: int, c2: int, head_side: int, n_classes: int = 10):
        super().__init__()
        if kind not in ("adaptive", "plain"):
            raise ValueError(f"kind must be 'adaptive' or 'plain', got {kind!r}")
        if head_side not in (7, 3):
            raise ValueError(f"head_side must be 7 or 3, got {head_side!r}")

        def layer(cin, cout):
            if kind == "adaptive":  # its tanh-generated kernel is the nonlinearity
                return [AdaptiveConv2d(cin, cout, 3, padding=1)]
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]

        pools = [nn.MaxPool2d(2)] if head_side == 3 else []
        self.features = nn.Sequential(
            *layer(1, c1), nn.MaxPool2d(2), *layer(c1, c2), nn.MaxPool2d(2), *pools
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c2 * head_side * head_side, n_classes))

    def forward(self, x):
        return self.head(self.features(x))


def make_model(name: str) -> nn.Module:
    if name == "lenet5":
        return LeNet5()
    if name in FAMILY:
        return TwoLayerNet(*FAMILY[name])
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")


def describe(name: str) -> str:
    if name == "lenet5":
        return "conv5x5(1->6)+ReLU, pool, conv5x5(6->16)+ReLU, pool, fc 120, fc 84, fc 10"
    kind, c1, c2, side = FAMILY[name]
    layer = "AdaptiveConv2d" if kind == "adaptive" else "Conv2d+ReLU"
    pools = "pool, pool" if side == 3 else "pool"
    return f"{layer}(1->{c1}), pool, {layer}({c1}->{c2}), {pools}, linear({c2}x{side}x{side}->10)"


# ------------------------------------------------------------------------ running

_DATA_CACHE: Dict[Tuple, Tuple[torch.Tensor, ...]] = {}


def _data(dataset: str, data_dir: Optional[str], n_train: Optional[int], n_test: Optional[int]):
    key = (dataset, data_dir, n_train, n_test)
    if key not in _DATA_CACHE:  # one read per process, however many runs it trains
        _DATA_CACHE[key] = idx_data.load(dataset, Path(data_dir) if data_dir else None, n_train, n_test)
    return _DATA_CACHE[key]


def split_validation(x: torch.Tensor, y: torch.Tensor, n_val: int, seed: int = VAL_SEED):
    """(x_train, y_train, x_val, y_val): a class-balanced validation set of `n_val` images
    carved out of the training set. `seed` fixes it for every model and training seed;
    the remaining training images keep their order."""
    if not 0 <= n_val < len(y):
        raise ValueError(f"n_val must be in [0, {len(y)}) for {len(y)} training images, got {n_val}")
    if n_val == 0:
        return x, y, x[:0], y[:0]
    val = idx_data.balanced_subset(y, n_val, seed)
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[val] = False
    return x[keep], y[keep], x[val], y[val]


def learning_rate(schedule: str, lr: float, step: int, total_steps: int) -> float:
    """The learning rate of optimisation step `step` (0-based) of `total_steps`. "cosine"
    decays from `lr` to 0 over the whole run; it is set per step from the step's index
    alone, so a run continued from a checkpoint follows the same schedule."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


@torch.inference_mode()  # no autograd graph: evaluation costs a forward pass only
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = sum(int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
                  for i in range(0, len(y), batch_size))
    return correct / len(y)


# Config entries that may differ between a run and its continuation (they do not change
# what is trained); every other entry must match the checkpoint's.
FREE_CONFIG_KEYS = ("models", "seeds", "data_dir", "progress")


def run_key(config: Dict) -> Dict:
    return {k: v for k, v in config.items() if k not in FREE_CONFIG_KEYS}


def run_folder(checkpoints: Path, name: str, seed: int) -> Path:
    return Path(checkpoints) / f"{name}_seed{seed}"


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)  # a run killed while writing leaves the previous file intact


def run_summary(record: Dict) -> Dict:
    """A run's derived figures, from its curves: final and validation-selected test
    accuracy, and for each target the epochs, training CPU seconds and training wall
    seconds until the test accuracy first reached it (None: not reached)."""
    c = record["config"]
    per = c["evals_per_epoch"]
    test, epoch_end = record["test_acc"], record["test_acc"][per - 1 :: per]
    out: Dict = {"final_test_acc": test[-1] if test else None, "best_val_acc": None, "selected_epoch": None,
                 "selected_test_acc": None, "to": {}}
    if record["val_acc"]:
        best = max(range(len(record["val_acc"])), key=lambda i: (record["val_acc"][i], -i))  # the first best
        out.update(best_val_acc=record["val_acc"][best], selected_epoch=best + 1, selected_test_acc=epoch_end[best])
    for t in c["targets"]:
        i = next((i for i, a in enumerate(test) if a >= t), None)
        out["to"][f"{t:g}"] = {
            "epochs": None if i is None else (i + 1) / per,
            "train_cpu_s": None if i is None else record["train_cpu_s"][i],
            "train_wall_s": None if i is None else record["train_wall_s"][i],
        }
    done = record["epochs_done"]
    out["train_cpu_s_per_epoch"] = record["train_cpu_s"][-1] / done if done else None
    out["train_wall_s_per_epoch"] = record["train_wall_s"][-1] / done if done else None
    return out


def train_run(name: str, seed: int, config: Dict, checkpoints: Path, stop_after: Optional[int] = None,
              log=print) -> Dict:
    """Train model `name` at `seed` under `config` with Adam and the fixed schedule,
    continuing from its checkpoint if there is one. After every epoch it writes the
    checkpoint (model, optimiser, batch-order generator, the record so far) and the
    record as JSON, and logs one progress line; so a run stopped at any point continues
    from its last finished epoch, and ends as it would have without the stop.
    `stop_after`: stop after that epoch of the schedule (the schedule stays
    config["epochs"] long). Returns the record."""
    folder = run_folder(checkpoints, name, seed)
    ckpt_path, json_path = folder / "checkpoint.pt", folder / "run.json"
    if not ckpt_path.exists() and json_path.exists():
        # A finished run needs only its record (its checkpoint may be gone with a machine).
        done = json.loads(json_path.read_text())
        if done.get("finished") and done["config"] == run_key(config):
            return done
    torch.set_num_threads(config["threads"])
    device = resolve_device(config["device"])
    x, y, x_test, y_test = _data(config["dataset"], config["data_dir"], config["n_train"], config["n_test"])
    x, y, x_val, y_val = split_validation(x, y, config["n_val"])
    x, y, x_val, y_val, x_test, y_test = (t.to(device) for t in (x, y, x_val, y_val, x_test, y_test))
    set_determinism(seed)  # the same init stream and batch order for every model at a seed
    model = make_model(name).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        record = json.loads(state["record"])
        if record["config"] != run_key(config):
            raise RuntimeError(f"{ckpt_path} was written with another configuration ({record['config']}, now "
                               f"{run_key(config)}): pass another --checkpoints folder, or --restart to discard it")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if record["epochs_done"] < config["epochs"]:
            record["resumed_at_epochs"].append(record["epochs_done"])
    else:
        record = {"model": name, "seed": seed, "config": run_key(config), "params": count_params(model),
                  "epochs_done": 0, "finished": False, "train_loss": [], "lr_at_epoch_end": [], "val_acc": [],
                  "test_acc": [], "train_cpu_s": [], "train_wall_s": [], "eval_cpu_s": 0.0, "resumed_at_epochs": []}
    epochs, per, bs = config["epochs"], config["evals_per_epoch"], config["batch_size"]
    steps = math.ceil(len(y) / bs)
    loss_fn = nn.CrossEntropyLoss()
    last = epochs if stop_after is None else min(epochs, stop_after)
    if record["epochs_done"] < last:  # CPU and wall times are per machine: name each one trained on
        machines, here = record.setdefault("machines", []), device_name(device)
        if machines[-1:] != [here]:
            machines.append(here)
    for epoch in range(record["epochs_done"], last):
        batches = torch.randperm(len(y), generator=g).split(bs)
        eval_after = {steps * k // per for k in range(1, per + 1)}
        cpu = record["train_cpu_s"][-1] if record["train_cpu_s"] else 0.0  # cumulative, training steps only
        wall = record["train_wall_s"][-1] if record["train_wall_s"] else 0.0
        total, n = 0.0, 0
        model.train()
        c0, w0 = time.process_time(), time.perf_counter()
        for step, idx in enumerate(batches, start=1):
            lr = learning_rate(config["schedule"], config["lr"], epoch * steps + step - 1, epochs * steps)
            for group in opt.param_groups:
                group["lr"] = lr
            idx = idx.to(device)
            total += train_step(model, opt, loss_fn, x[idx], y[idx])
            n += len(idx)
            if step in eval_after:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                cpu += time.process_time() - c0
                wall += time.perf_counter() - w0
                e0 = time.process_time()
                record["test_acc"].append(accuracy(model, x_test, y_test))
                record["train_cpu_s"].append(cpu)
                record["train_wall_s"].append(wall)
                if step == steps and len(y_val):  # model selection: once per epoch, on validation images only
                    record["val_acc"].append(accuracy(model, x_val, y_val))
                record["eval_cpu_s"] += time.process_time() - e0
                model.train()
                c0, w0 = time.process_time(), time.perf_counter()
        record["train_loss"].append(total / n)
        record["lr_at_epoch_end"].append(lr)
        record["epochs_done"] = epoch + 1
        record["finished"] = epoch + 1 == epochs
        record.update(run_summary(record))
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "generator": g.get_state(),
                 "torch_rng": torch.get_rng_state(), "record": json.dumps(record)}
        _atomic(ckpt_path, lambda p: torch.save(state, p))
        _atomic(json_path, lambda p: p.write_text(json.dumps(record, indent=1) + "\n"))
        val = f"{record['val_acc'][-1] * 100:.2f} %" if record["val_acc"] else "—"
        log(f"{name:<12} seed {seed} epoch {epoch + 1:>2}/{epochs}: loss {record['train_loss'][-1]:.4f}, "
            f"val {val}, test {record['test_acc'][-1] * 100:.2f} %, CPU {cpu:.1f} s, wall {wall:.1f} s "
            f"(training, cumulative)")
    return record


# The order in which a seed's runs are trained: LeNet-5 (every comparison's reference)
# and the pair nearest the paper's 6x claim first, then the pair nearest its 66x, then
# the rest; so that a run cut short (a deadline, a shared machine) still has the models
# the claims rest on at every finished seed.
PRIORITY = ("lenet5", "adaptive-m", "plain-m", "adaptive-xs", "plain-xs", "adaptive-s", "plain-s",
            "adaptive-l", "plain-l")


def _jobs(models: Sequence[str], seeds: Sequence[int]) -> List[Tuple[str, int]]:
    # Seed by seed, so that a run cut short still has every model at the first seeds.
    order = sorted(models, key=lambda n: PRIORITY.index(n) if n in PRIORITY else len(PRIORITY))
    return [(name, seed) for seed in seeds for name in order]


def cpu_seconds_per_epoch(name: str, batch_size: int, n_train: int = 55_000, steps: int = 5) -> float:
    """CPU time (this process, one thread) of one training epoch of `name`, from the
    median of `steps` Adam steps on random 28x28 images after one warm-up step. CPU
    time, unlike the wall-clock seconds of a run, does not grow when other programs
    share the cores, so it ranks the models' cost on a busy machine."""
    torch.set_num_threads(1)
    set_determinism(0)
    model = make_model(name)
    opt = torch.optim.Adam(model.parameters())
    x, y = torch.rand(batch_size, 1, 28, 28), torch.randint(0, 10, (batch_size,))
    times = []
    for _ in range(steps + 1):
        t0 = time.process_time()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.process_time() - t0)
    return statistics.median(times[1:]) * n_train / batch_size


def _stats(values: Sequence[float], prefix: str) -> Dict:
    return {f"{prefix}_mean": statistics.fmean(values), f"{prefix}_std": statistics.pstdev(values),
            f"{prefix}_min": min(values), f"{prefix}_max": max(values)}


def model_summary(runs: Sequence[Dict], targets: Sequence[float]) -> Dict:
    """Over the finished runs (seeds) of one model: final and validation-selected test
    accuracy (mean, population sd, range), and for each target the per-seed epochs,
    training CPU and wall seconds to reach it, with medians where every seed reached it."""
    done = [r for r in runs if r["finished"]]
    s: Dict = {"seeds_finished": [r["seed"] for r in done], "seeds_unfinished": {
        str(r["seed"]): r["epochs_done"] for r in runs if not r["finished"]}}
    if not done:
        return s
    s.update(_stats([r["final_test_acc"] for r in done], "final_test_acc"))
    s["final_test_acc_sample_sd"] = statistics.stdev([r["final_test_acc"] for r in done]) if len(done) > 1 else None
    if all(r["selected_test_acc"] is not None for r in done):
        s.update(_stats([r["selected_test_acc"] for r in done], "selected_test_acc"))
        s["selected_epochs"] = [r["selected_epoch"] for r in done]
    s["to"] = {}
    for t in targets:
        per_seed = {k: [r["to"][f"{t:g}"][k] for r in done] for k in ("epochs", "train_cpu_s", "train_wall_s")}
        reached = all(v is not None for v in per_seed["epochs"])
        s["to"][f"{t:g}"] = {**per_seed, **{f"{k}_median": statistics.median(v) if reached else None
                                          for k, v in per_seed.items()}}
    s["train_cpu_s_per_epoch_median"] = statistics.median(r["train_cpu_s_per_epoch"] for r in done)
    s["train_wall_s_per_epoch_median"] = statistics.median(r["train_wall_s_per_epoch"] for r in done)
    return s


def collect(config: Dict, checkpoints: Path) -> Dict:
    """The study's results from the runs' JSON files written so far (finished or not)."""
    results: Dict = {"experiment": "fashion_mnist", "config": config, **environment(resolve_device(config["device"]))}
    results["torch_threads"] = config["threads"]
    results["models"] = {}
    cpu_total = 0.0
    for name in config["models"]:
        runs = []
        for seed in config["seeds"]:
            path = run_folder(checkpoints, name, seed) / "run.json"
            if path.exists():
                run = json.loads(path.read_text())
                if run["config"] != run_key(config):
                    raise RuntimeError(f"{path} was written with another configuration: {run['config']}")
                runs.append(run)
                cpu_total += run["train_cpu_s"][-1] + run["eval_cpu_s"]
        results["models"][name] = {
            "params": count_params(make_model(name)), "kind": "lenet5" if name == "lenet5" else FAMILY[name][0],
            "layers": describe(name), "runs": runs, **model_summary(runs, config["targets"]),
        }
    results["runs_cpu_seconds"] = cpu_total  # training + evaluation, every epoch written so far
    sessions = Path(checkpoints) / "sessions.jsonl"
    if sessions.exists():
        lines = [json.loads(line) for line in sessions.read_text().splitlines() if line.strip()]
        results["sessions"] = [s for s in lines if s["config"] == run_key(config)]
    return results


def _log_session(checkpoints: Path, config: Dict, started: str, wall: float) -> None:
    """One line per invocation: its whole CPU time (this process and its finished
    workers; data loading, evaluation and epochs lost to an interruption included),
    from the process clocks, which a stopped process does not advance."""
    cpu = sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
    line = {"started": started, "wall_s": wall, "cpu_s": cpu, "config": run_key(config)}
    with open(Path(checkpoints) / "sessions.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


def _train_and_log(name: str, seed: int, config: Dict, checkpoints: Path, stop_after: Optional[int]) -> Dict:
    def log(line: str) -> None:
        if config["progress"]:
            print(line, flush=True)
        with open(Path(checkpoints) / "progress.log", "a") as f:
            f.write(f"{time.strftime('%H:%M:%S', time.gmtime())} {line}\n")

    return train_run(name, seed, config, checkpoints, stop_after, log)


def run_experiment(config: Dict, checkpoints: Path, jobs: int = 1, stop_after: Optional[int] = None,
                   on_run=None) -> Dict:
    """Train every (model, seed) of `config` not finished yet (seed-major, see PRIORITY),
    each continuing from its checkpoint; `on_run(results)` after each run."""
    checkpoints = Path(checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    todo = _jobs(config["models"], config["seeds"])
    if jobs <= 1:
        for name, seed in todo:
            _train_and_log(name, seed, config, checkpoints, stop_after)
            if on_run is not None:
                on_run(collect(config, checkpoints))
    else:
        import multiprocessing

        # spawn: a fresh interpreter per worker (no forked torch thread pools).
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_train_and_log, name, seed, config, checkpoints, stop_after) for name, seed in todo]
            for future in as_completed(futures):
                future.result()
                if on_run is not None:
                    on_run(collect(config, checkpoints))
    return collect(config, checkpoints)


# ------------------------------------------------------------------------ outputs

COLORS = {"lenet5": "tab:blue", "adaptive": "tab:red", "plain": "tab:gray"}


def _fmt_values(values: Sequence[Optional[float]], fmt: str = "g") -> str:
    return ", ".join("never" if v is None else format(v, fmt) for v in values)


def _fmt_to(entry: Dict, key: str, fmt: str) -> str:
    median = entry[f"{key}_median"]
    return f"{'—' if median is None else format(median, fmt)} ({_fmt_values(entry[key], fmt)})"


def _acc(m: Dict, prefix: str) -> str:
    if f"{prefix}_mean" not in m:
        return "—"
    return (f"{m[f'{prefix}_mean'] * 100:.2f} ± {m[f'{prefix}_std'] * 100:.2f} % "
            f"({m[f'{prefix}_min'] * 100:.2f}–{m[f'{prefix}_max'] * 100:.2f})")


def markdown_table(results: Dict) -> str:
    """The results table in Markdown (RESULTS.md quotes it): finished runs only."""
    c = results["config"]
    lenet = results["models"].get("lenet5", {}).get("params", LENET5_PARAMS)
    targets = [f"{t:g}" for t in c["targets"]]
    head = ["model", "params", "LeNet-5 / params", "seeds", "final test acc, mean ± sd (min–max)",
            "best-val-selected test acc (selected epochs)"]
    for t in targets:
        head += [f"epochs to {float(t):.0%}: median (per seed)", f"train CPU s to {float(t):.0%}",
                 f"train wall s to {float(t):.0%}"]
    head += ["train CPU s/epoch", "train wall s/epoch"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in results["models"].items():
        if not m["seeds_finished"]:
            continue
        cells = [name, f"{m['params']:,}", f"{lenet / m['params']:.1f}x", str(len(m["seeds_finished"])),
                 _acc(m, "final_test_acc"),
                 f"{_acc(m, 'selected_test_acc')} ({_fmt_values(m.get('selected_epochs', []))})"]
        for t in targets:
            cells += [_fmt_to(m["to"][t], "epochs", "g"), _fmt_to(m["to"][t], "train_cpu_s", ".0f"),
                      _fmt_to(m["to"][t], "train_wall_s", ".0f")]
        cells += [f"{m['train_cpu_s_per_epoch_median']:.1f}", f"{m['train_wall_s_per_epoch_median']:.1f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def progress_text(results: Dict) -> str:
    """Which (model, seed) runs are finished, partly done, or not started."""
    lines = []
    for name, m in results["models"].items():
        started = {r["seed"]: r["epochs_done"] for r in m["runs"]}
        cells = [f"seed {s}: {started[s] if s in started else 0}/{results['config']['epochs']}"
                 for s in results["config"]["seeds"]]
        lines.append(f"{name:<12} " + ", ".join(cells))
    return "\n".join(lines)


def headline(results: Dict, within: float = 0.01) -> Optional[Dict]:
    """The smallest adaptive network whose mean final test accuracy is within `within`
    (1 point) of LeNet-5's, its parameter ratio, and its epochs and CPU seconds to each
    target beside LeNet-5's; the same for the plain controls. None without a finished
    LeNet-5 run."""
    models = {n: m for n, m in results["models"].items() if m["seeds_finished"]}
    if "lenet5" not in models:
        return None
    lenet = models["lenet5"]

    def entry(m: Dict) -> Dict:
        return {"params": m["params"], "final_test_acc_mean": m["final_test_acc_mean"],
                "selected_test_acc_mean": m.get("selected_test_acc_mean"), "to": m["to"]}

    out = {"within": within, "lenet5": entry(lenet)}
    for kind in ("adaptive", "plain"):
        close = [(m["params"], n) for n, m in models.items()
                 if m["kind"] == kind and m["final_test_acc_mean"] >= lenet["final_test_acc_mean"] - within]
        if not close:
            out[kind] = None
            continue
        name = min(close)[1]
        m = models[name]
        out[kind] = {"model": name, "param_ratio": lenet["params"] / m["params"],
                     "points_vs_lenet5": (m["final_test_acc_mean"] - lenet["final_test_acc_mean"]) * 100, **entry(m)}
    return out


def headline_text(results: Dict) -> str:
    h = headline(results)
    if h is None:
        return "no finished LeNet-5 run: no headline"

    def reach(m: Dict) -> str:
        return "; ".join(f"to {float(t):.0%}: {_fmt_to(e, 'epochs', 'g')} epochs, "
                         f"{_fmt_to(e, 'train_cpu_s', '.0f')} CPU s" for t, e in m["to"].items())

    lenet = h["lenet5"]
    lines = [f"LeNet-5: {lenet['params']:,} params, {lenet['final_test_acc_mean'] * 100:.2f} %; {reach(lenet)}"]
    for kind in ("adaptive", "plain"):
        m = h[kind]
        if m is None:
            lines.append(f"no {kind} network is within {h['within'] * 100:g} point of LeNet-5")
            continue
        lines.append(
            f"smallest {kind} network within {h['within'] * 100:g} point of LeNet-5: {m['model']}, "
            f"{m['params']:,} params ({m['param_ratio']:.1f}x fewer), {m['final_test_acc_mean'] * 100:.2f} % "
            f"({m['points_vs_lenet5']:+.2f} points vs LeNet-5); {reach(m)}")
    return "\n".join(lines)


def _color(name: str, m: Dict, models: Dict):
    import matplotlib.pyplot as plt

    if m["kind"] == "lenet5":
        return COLORS["lenet5"], "-", 2.5
    sizes = sorted(mm["params"] for mm in models.values() if mm["kind"] == m["kind"])  # darker = more parameters
    shade = {"adaptive": plt.cm.Reds, "plain": plt.cm.Greys}[m["kind"]]
    return shade(0.4 + 0.55 * sizes.index(m["params"]) / max(len(sizes) - 1, 1)), (
        "-" if m["kind"] == "adaptive" else "--"), 1.5


def plot(results: Dict, path: Path) -> None:
    """Final test accuracy against parameters; mean test accuracy against epochs and
    against training CPU seconds (finished runs only)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    c = results["config"]
    models = {name: m for name, m in results["models"].items() if m["seeds_finished"]}
    fig, (ax_p, ax_e, ax_t) = plt.subplots(1, 3, figsize=(20, 6))
    for kind, marker in (("adaptive", "o"), ("plain", "s"), ("lenet5", "*")):
        group = sorted(((m["params"], name, m) for name, m in models.items() if m["kind"] == kind))
        if not group:
            continue
        params = [g[0] for g in group]
        means = [g[2]["final_test_acc_mean"] * 100 for g in group]
        sds = [g[2]["final_test_acc_std"] * 100 for g in group]
        label = {"adaptive": "adaptive (AdaptiveConv2d x2 + linear)", "plain": "plain control (Conv2d+ReLU x2 + linear)",
                 "lenet5": "LeNet-5"}[kind]
        ax_p.errorbar(params, means, yerr=sds, color=COLORS[kind], marker=marker, ms=12 if kind == "lenet5" else 7,
                      capsize=3, lw=1.5, ls="-" if kind != "lenet5" else "none", label=label)
        for x, y, (_, name, _) in zip(params, means, group):
            ax_p.annotate(name, (x, y), textcoords="offset points", xytext=(6, 5) if kind == "adaptive" else (6, -13),
                          fontsize=8, color=COLORS[kind])
    if "lenet5" in models:
        ref = models["lenet5"]["final_test_acc_mean"] * 100
        ax_p.axhline(ref - 1, color=COLORS["lenet5"], ls=":", lw=1, label="LeNet-5 minus 1 point")
    ax_p.set_xscale("log")
    ax_p.set_xlabel("trainable parameters (log scale)")
    n_runs = sorted({len(m["seeds_finished"]) for m in models.values()}) or [0]
    seeds = "-".join(map(str, dict.fromkeys([n_runs[0], n_runs[-1]])))
    ax_p.set_ylabel(f"final test accuracy after {c['epochs']} epochs, % (mean ± sd over {seeds} seed(s))")
    ax_p.set_title("accuracy vs parameters", fontsize=11)
    ax_p.grid(alpha=0.3, which="both")
    ax_p.legend(loc="lower right", fontsize=8.5)

    per = c["evals_per_epoch"]
    for name, m in models.items():
        done = [r for r in m["runs"] if r["finished"]]
        curves = torch.tensor([r["test_acc"] for r in done]) * 100
        cpu = torch.tensor([r["train_cpu_s"] for r in done]).mean(0)
        color, style, lw = _color(name, m, models)
        label = f"{name} ({m['params']:,})"
        ax_e.plot(torch.arange(1, curves.shape[1] + 1) / per, curves.mean(0), style, color=color, lw=lw, label=label)
        ax_t.plot(cpu, curves.mean(0), style, color=color, lw=lw, label=label)
    for ax in (ax_e, ax_t):
        for t in c["targets"]:
            ax.axhline(t * 100, color="tab:green", ls=":", lw=1.2)
        ax.set_ylabel("test accuracy, % (mean over seeds)")
        ax.set_ylim(bottom=max(70, ax.get_ylim()[0]))
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="lower right", fontsize=7.5, ncol=2)
    ax_e.set_xlabel(f"epoch (test accuracy {per}x per epoch; {c['schedule']} schedule over {c['epochs']} epochs)")
    ax_e.set_title(f"learning curves (dotted: {', '.join(f'{t:.0%}' for t in c['targets'])})", fontsize=11)
    ax_t.set_xscale("log")
    ax_t.set_xlabel("training CPU seconds, one thread (log scale; evaluation excluded)")
    ax_t.set_title("time to accuracy", fontsize=11)
    n = "full" if c["n_train"] is None else f"{c['n_train']} train / {c['n_test']} test"
    save_figure(fig, path, f"{c['dataset']} ({n}, {c['n_val']} of the training images held out for validation): "
                f"LeNet-5 vs adaptive networks vs plain controls; Adam lr {c['lr']:g}, {c['schedule']}, batch "
                f"{c['batch_size']}, {c['epochs']} epochs; {results['device']}, adaptive backend "
                f"'{results['adaptive_backend']}'", fontsize=10.5)


# -------------------------------------------------------------------------- main

# The schedule, fixed before the study was run (issue #30): cosine decay over 15 epochs
# (6,450 Adam steps on 55,000 images), model selection on 5,000 held-out training images.
EPOCHS = 15
N_VAL = 5000
TARGETS = (0.85, 0.88)
QUICK = {"n_train": 5000, "n_test": 2000, "n_val": 500, "epochs": 3, "seeds": [0]}


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist", choices=sorted(idx_data.DATASETS))
    p.add_argument("--data-dir", default=None, help="folder with the four IDX files (plain or .gz); see examples/idx_data.py")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="folder for the JSON and plot (default: results/, untracked; the committed results are examples/results/)")
    p.add_argument("--checkpoints", type=Path, default=None,
                   help="folder for each run's checkpoint, JSON and progress.log (default: results/fashion_mnist_runs"
                   "[_quick], untracked)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, metavar="MODEL",
                   help=f"models to train (default all: {' '.join(MODELS)})")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help=f"seeds (default {list(SEEDS)}; [0] with --quick)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"length of the schedule in epochs (default {EPOCHS}; {QUICK['epochs']} with --quick)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop each run after this epoch of the schedule; a later call continues it")
    p.add_argument("--schedule", default="cosine", choices=SCHEDULES,
                   help="learning rate: cosine decay to 0 over --epochs (default), or constant")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's (initial) learning rate, every model (default 3e-3)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--n-val", type=int, default=None,
                   help=f"training images held out for model selection (default {N_VAL}; {QUICK['n_val']} with --quick)")
    p.add_argument("--evals-per-epoch", type=int, default=2, help="test evaluations per epoch (default 2)")
    p.add_argument("--targets", type=float, nargs="+", default=list(TARGETS),
                   help="test accuracies for 'epochs/time to target' (default 0.85 0.88)")
    p.add_argument("--n-train", type=int, default=None, help=f"train subset (default all 60k; {QUICK['n_train']} with --quick)")
    p.add_argument("--n-test", type=int, default=None, help=f"test subset (default all 10k; {QUICK['n_test']} with --quick)")
    p.add_argument("--quick", action="store_true", help="a subset, one seed: a few minutes on 2 CPU cores")
    p.add_argument("--jobs", type=int, default=1, help="models trained at once, each in its own process (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--restart", action="store_true",
                   help="discard the selected runs' checkpoints and start them again (default: continue them)")
    p.add_argument("--report-only", action="store_true", help="no training: plot and tabulate the runs written so far")
    p.add_argument("--cpu-timing", action="store_true",
                   help="also measure each model's CPU seconds per epoch (a few steps each, one thread)")
    p.add_argument("--no-progress", action="store_true", help="no per-epoch progress lines on stdout")
    args = p.parse_args(argv)
    if args.evals_per_epoch < 1:
        raise ValueError(f"--evals-per-epoch must be >= 1, got {args.evals_per_epoch}")
    if args.stop_after is not None and args.stop_after < 1:
        raise ValueError(f"--stop-after must be >= 1, got {args.stop_after}")

    quick = QUICK if args.quick else {}
    config = {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "models": list(dict.fromkeys(args.models)),
        "seeds": args.seeds or quick.get("seeds") or list(SEEDS),
        "epochs": args.epochs or quick.get("epochs") or EPOCHS,
        "schedule": args.schedule,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "n_val": quick.get("n_val", N_VAL) if args.n_val is None else args.n_val,
        "evals_per_epoch": args.evals_per_epoch,
        "targets": sorted(args.targets),
        "n_train": args.n_train or quick.get("n_train"),
        "n_test": args.n_test or quick.get("n_test"),
        "threads": args.threads,
        "device": args.device,
        "progress": not args.no_progress,
    }
    stem = ("fashion_mnist" if args.dataset == "fashion-mnist" else args.dataset) + "_convergence"
    stem += "_quick" if args.quick else ""
    checkpoints = args.checkpoints or DEFAULT_OUT / f"{stem}_runs"
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = args.out / f"{stem}.json", args.out / f"{stem}.png"

    def write(results: Dict) -> None:
        _atomic(json_path, lambda p: p.write_text(json.dumps(results, indent=1) + "\n"))

    if args.report_only:
        results = collect(config, checkpoints)
    else:
        torch.set_num_threads(args.threads)
        idx_data.locate(args.dataset, Path(args.data_dir) if args.data_dir else None)  # fail before any training
        if args.restart:
            for name, seed in _jobs(config["models"], config["seeds"]):
                for f in ("checkpoint.pt", "run.json"):
                    (run_folder(checkpoints, name, seed) / f).unlink(missing_ok=True)
        started, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.perf_counter()
        try:
            results = run_experiment(config, checkpoints, args.jobs,
                                     args.stop_after, on_run=write)
        finally:
            checkpoints.mkdir(parents=True, exist_ok=True)
            _log_session(checkpoints, config, started, time.perf_counter() - t0)
        results = collect(config, checkpoints)
    if args.cpu_timing:
        n = (config["n_train"] or 60_000) - config["n_val"]
        results["cpu_seconds_per_epoch"] = {name: cpu_seconds_per_epoch(name, config["batch_size"], n)
                                            for name in results["models"]}
    results["headline"] = headline(results)
    write(results)
    if any(m["seeds_finished"] for m in results["models"].values()):
        plot(results, png_path)
    print(progress_text(results))
    print(markdown_table(results))
    print(headline_text(results))
    print(f"wrote {json_path}" + (f" and {png_path}" if png_path.exists() else ""))
    return results


if __name__ == "__main__":
    main()
