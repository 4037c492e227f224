"""The paper's claims on real 28x28 images: Fashion-MNIST, LeNet-5 against adaptive networks.

Zamora Esquivel et al. (ICCV-W 2019) report >99% on MNIST with 66x fewer parameters
than a LeNet base model, convergence in at least 2x fewer epochs, and (conclusion) 6x
fewer parameters for a 0.2% drop in accuracy. MNIST cannot be downloaded here;
Fashion-MNIST has the same format (60k/10k 28x28 grey images, 10 classes) and is harder.
examples/paper_claims.py checks the same claims on 8x8 digits; this file reuses its
training loop and summaries.

Models, all trained the same way (Adam, one learning rate, batch size and number of
epochs for all, cross-entropy, the same data and batch order per seed):

- ``lenet5``: the classic LeNet-5 (conv5x5 6 -> pool -> conv5x5 16 -> pool -> fc 120 ->
  fc 84 -> fc 10, ReLU, max-pool): 61,706 parameters.
- ``adaptive-*``: the paper's idea: AdaptiveConv2d layers (3x3; their tanh-generated
  kernels are the only nonlinearity), max-pooling, one linear layer as the head.
  ``adaptive-xs`` .. ``adaptive-l`` span about 60x to 3x fewer parameters than LeNet-5.
- ``plain-*``: controls: the same layout with nn.Conv2d + ReLU, widened to the same
  parameter count as the adaptive model of the same name.

Reported per model: final-epoch test accuracy (mean +- sd over seeds; the last epoch,
not the best, so the test set selects nothing), parameters, epochs to reach
``--target`` test accuracy, CPU training seconds per epoch.

Run from the repository root: ``python -m examples.fashion_mnist`` (the full run:
60k/10k, 3 seeds; ``--jobs 2`` trains two models at a time, one thread each), or
``--quick`` (a subset, one seed, a few minutes). The data: see examples/idx_data.py
(``--data-dir``, the Debian package dataset-fashion-mnist, or torchvision's download).
Writes ``fashion_mnist.json`` (after every finished run, so a long run can be watched
and resumed with ``--resume``) and ``fashion_mnist.png`` under ``--out`` (default: the
untracked results/; the committed results change only with ``--out examples/results``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from adaptive_conv_ext import AdaptiveConv2d

from . import idx_data
from .paper_claims import (
    DEFAULT_OUT, count_params, environment, epochs_to_target, resolve_device, save_figure, set_determinism,
    summarize, train,
)

SEEDS = (0, 1, 2)
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


def run_one(name: str, seed: int, config: Dict) -> Dict:
    """Train model `name` with `seed` under `config` (the "config" block of the results);
    the run's record: per-evaluation test accuracy, per-epoch loss, seconds."""
    torch.set_num_threads(config["threads"])
    data = _data(config["dataset"], config["data_dir"], config["n_train"], config["n_test"])
    set_determinism(seed)  # the same init stream and batch order for every model at a seed
    run = train(
        make_model(name), data, config["epochs"], seed, resolve_device(config["device"]),
        lr=config["lr"], batch_size=config["batch_size"], desc=f"{name} seed {seed}",
        progress=config["progress"], evals_per_epoch=config["evals_per_epoch"], train_accuracy=False,
    )
    run["epochs_to_target"] = epochs_to_target(run["test_acc"], config["target"], config["evals_per_epoch"])
    run["model"] = name
    return run


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


def cpu_seconds_per_epoch(name: str, batch_size: int, n_train: int = 60_000, steps: int = 5) -> float:
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


def model_summaries(results: Dict) -> None:
    """(Re)compute each model's entry from the runs finished so far."""
    target = results["config"]["target"]
    for name, m in results["models"].items():
        m["runs"].sort(key=lambda r: r["seed"])
        m.update(summarize(m["runs"], target) if m["runs"] else {})
        m["final_test_acc_sample_sd"] = statistics.stdev(
            [r["final_test_acc"] for r in m["runs"]]) if len(m["runs"]) > 1 else None


def run_experiment(config: Dict, out_json: Optional[Path], jobs: int = 1, resume: bool = False) -> Dict:
    models, seeds = config["models"], config["seeds"]
    results: Dict = {"experiment": "fashion_mnist", "config": config, **environment(resolve_device(config["device"]))}
    results["torch_threads"] = config["threads"]
    if resume and out_json is not None and out_json.exists():
        old = json.loads(out_json.read_text())
        if {k: v for k, v in old["config"].items() if k != "progress"} != {k: v for k, v in config.items() if k != "progress"}:
            raise SystemExit(f"--resume: {out_json} was written with another configuration: {old['config']}")
        results["models"] = old["models"]
        results["elapsed_seconds_before_resume"] = old.get("elapsed_seconds", 0.0)
    results.setdefault("models", {})
    for name in models:
        results["models"].setdefault(name, {
            "params": count_params(make_model(name)),
            "kind": "lenet5" if name == "lenet5" else FAMILY[name][0],
            "layers": describe(name),
            "runs": [],
        })
    done = {(name, r["seed"]) for name, m in results["models"].items() for r in m["runs"]}
    todo = [job for job in _jobs(models, seeds) if job not in done]
    start = time.perf_counter()

    def record(run: Dict) -> None:
        results["models"][run["model"]]["runs"].append(run)
        model_summaries(results)
        results["elapsed_seconds"] = results.get("elapsed_seconds_before_resume", 0.0) + time.perf_counter() - start
        if out_json is not None:
            tmp = out_json.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(results, indent=1) + "\n")
            tmp.replace(out_json)  # never a half-written file
        print(f"[{results['elapsed_seconds']:7.0f} s] {run['model']:<12} seed {run['seed']}: final test "
              f"{run['final_test_acc'] * 100:.2f} %, {run['train_seconds_per_epoch']:.1f} s/epoch, "
              f"epochs to {config['target']:.0%}: {run['epochs_to_target']}", flush=True)

    if jobs <= 1:
        for name, seed in todo:
            record(run_one(name, seed, config))
    else:
        import multiprocessing

        # spawn: a fresh interpreter per worker (no forked torch thread pools).
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_one, name, seed, config) for name, seed in todo]
            for future in as_completed(futures):
                record(future.result())
    model_summaries(results)
    return results


# ------------------------------------------------------------------------ outputs

COLORS = {"lenet5": "tab:blue", "adaptive": "tab:red", "plain": "tab:gray"}


def _fmt_epochs(values: Sequence[Optional[float]]) -> str:
    return ", ".join("never" if v is None else f"{v:g}" for v in values)


def _fmt_median(value: Optional[float]) -> str:
    return "— (not every seed)" if value is None else f"{value:g}"


def markdown_table(results: Dict) -> str:
    """The results table in Markdown (RESULTS.md quotes it)."""
    c = results["config"]
    lenet = results["models"].get("lenet5", {}).get("params", LENET5_PARAMS)
    rows = [
        f"| model | layers | params | LeNet-5 / params | seeds | final test acc, mean ± sd (min–max) | "
        f"epochs to {c['target']:.0%}: median (per seed) | train s/epoch: wall (median) | CPU s/epoch |",
        "|---|---|---:|---:|---:|---|---|---:|---:|",
    ]
    cpu = results.get("cpu_seconds_per_epoch", {})
    for name, m in results["models"].items():
        if not m["runs"]:
            continue
        median = m["epochs_to_target_median"]
        rows.append(
            f"| {name} | {m['layers']} | {m['params']:,} | {lenet / m['params']:.1f}x | {len(m['runs'])} | "
            f"{m['final_test_acc_mean'] * 100:.2f} ± {m['final_test_acc_std'] * 100:.2f} % "
            f"({m['final_test_acc_min'] * 100:.2f}–{m['final_test_acc_max'] * 100:.2f}) | "
            f"{'—' if median is None else f'{median:g}'} ({_fmt_epochs(m['epochs_to_target'])}) | "
            f"{m['train_seconds_per_epoch_median']:.0f} | {f'{cpu[name]:.1f}' if name in cpu else '—'} |"
        )
    return "\n".join(rows)


def headline(results: Dict, within: float = 0.01) -> Optional[Dict]:
    """The smallest adaptive network whose mean final test accuracy is within `within`
    (1 point) of LeNet-5's, its parameter ratio, and epochs to target for both; the same
    for the plain controls, for comparison. None without a LeNet-5 result."""
    models = {n: m for n, m in results["models"].items() if m["runs"]}
    if "lenet5" not in models:
        return None
    lenet = models["lenet5"]
    out = {"within": within, "lenet5": {
        "params": lenet["params"], "final_test_acc_mean": lenet["final_test_acc_mean"],
        "epochs_to_target_median": lenet["epochs_to_target_median"], "epochs_to_target": lenet["epochs_to_target"],
    }}
    for kind in ("adaptive", "plain"):
        close = [(m["params"], n) for n, m in models.items()
                 if m["kind"] == kind and m["final_test_acc_mean"] >= lenet["final_test_acc_mean"] - within]
        if not close:
            out[kind] = None
            continue
        name = min(close)[1]
        m = models[name]
        out[kind] = {
            "model": name, "params": m["params"], "param_ratio": lenet["params"] / m["params"],
            "final_test_acc_mean": m["final_test_acc_mean"],
            "points_vs_lenet5": (m["final_test_acc_mean"] - lenet["final_test_acc_mean"]) * 100,
            "epochs_to_target_median": m["epochs_to_target_median"], "epochs_to_target": m["epochs_to_target"],
        }
    return out


def headline_text(results: Dict) -> str:
    h = headline(results)
    if h is None:
        return "no LeNet-5 result: no headline"
    target = f"{results['config']['target']:.0%}"
    lenet = h["lenet5"]
    lines = [f"LeNet-5: {lenet['params']:,} params, {lenet['final_test_acc_mean'] * 100:.2f} %, "
             f"epochs to {target}: {_fmt_median(lenet['epochs_to_target_median'])} "
             f"(per seed {_fmt_epochs(lenet['epochs_to_target'])})"]
    for kind in ("adaptive", "plain"):
        m = h[kind]
        if m is None:
            lines.append(f"no {kind} network is within {h['within'] * 100:g} point of LeNet-5")
            continue
        lines.append(
            f"smallest {kind} network within {h['within'] * 100:g} point of LeNet-5: {m['model']}, "
            f"{m['params']:,} params ({m['param_ratio']:.1f}x fewer), {m['final_test_acc_mean'] * 100:.2f} % "
            f"({m['points_vs_lenet5']:+.2f} points vs LeNet-5), epochs to {target}: "
            f"{_fmt_median(m['epochs_to_target_median'])} (per seed {_fmt_epochs(m['epochs_to_target'])})"
        )
    return "\n".join(lines)


def plot(results: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    c = results["config"]
    models = {name: m for name, m in results["models"].items() if m["runs"]}
    fig, (ax_p, ax_e) = plt.subplots(1, 2, figsize=(14, 5.5))
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
    n_runs = sorted({len(m["runs"]) for m in models.values()})
    seeds = "-".join(map(str, dict.fromkeys([n_runs[0], n_runs[-1]])))
    ax_p.set_ylabel(f"final test accuracy after {c['epochs']} epochs, % (mean ± sd over {seeds} seed(s))")
    ax_p.set_title("accuracy vs parameters", fontsize=11)
    ax_p.grid(alpha=0.3, which="both")
    ax_p.legend(loc="lower right", fontsize=8.5)

    per = c["evals_per_epoch"]
    shades = {"adaptive": plt.cm.Reds, "plain": plt.cm.Greys}
    for name, m in models.items():
        curves = torch.tensor([r["test_acc"] for r in m["runs"]]) * 100
        x = torch.arange(1, curves.shape[1] + 1) / per
        if m["kind"] == "lenet5":
            color, style, lw = COLORS["lenet5"], "-", 2.5
        else:  # darker = more parameters
            sizes = sorted(mm["params"] for mm in models.values() if mm["kind"] == m["kind"])
            color = shades[m["kind"]](0.4 + 0.55 * sizes.index(m["params"]) / max(len(sizes) - 1, 1))
            style, lw = ("-" if m["kind"] == "adaptive" else "--"), 1.5
        ax_e.plot(x, curves.mean(0), style, color=color, lw=lw, marker=".", label=f"{name} ({m['params']:,})")
    ax_e.axhline(c["target"] * 100, color="tab:green", ls=":", lw=1.5, label=f"target {c['target']:.0%}")
    ax_e.set_xlabel(f"epoch (test accuracy {per}x per epoch; mean over seeds)")
    ax_e.set_ylabel("test accuracy, %")
    ax_e.set_title("learning curves", fontsize=11)
    ax_e.grid(alpha=0.3)
    ax_e.legend(loc="lower right", fontsize=7.5, ncol=2)
    n = "full" if c["n_train"] is None else f"{c['n_train']} train / {c['n_test']} test"
    save_figure(fig, path, f"{c['dataset']} ({n}): LeNet-5 vs adaptive networks vs plain controls; Adam lr "
                f"{c['lr']:g}, batch {c['batch_size']}, {c['epochs']} epochs; {results['device']}, adaptive backend "
                f"'{results['adaptive_backend']}'", fontsize=10.5)


# -------------------------------------------------------------------------- main

# The full run's length is set by what a shared 2-core CPU trains in about an hour
# (9 models x 3 seeds on 60k images); see examples/RESULTS.md.
EPOCHS = 2
QUICK = {"n_train": 5000, "n_test": 2000, "epochs": 3, "seeds": [0]}


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist", choices=sorted(idx_data.DATASETS))
    p.add_argument("--data-dir", default=None, help="folder with the four IDX files (plain or .gz); see examples/idx_data.py")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="output folder (default: results/, untracked; the committed results are examples/results/)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, metavar="MODEL",
                   help=f"models to train (default all: {' '.join(MODELS)})")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help=f"seeds (default {list(SEEDS)}; [0] with --quick)")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs (default {EPOCHS}; {QUICK['epochs']} with --quick)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate, every model (default 3e-3)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--evals-per-epoch", type=int, default=4, help="test evaluations per epoch (default 4)")
    p.add_argument("--target", type=float, default=0.85, help="test accuracy for 'epochs to target' (default 0.85)")
    p.add_argument("--n-train", type=int, default=None, help=f"train subset (default all 60k; {QUICK['n_train']} with --quick)")
    p.add_argument("--n-test", type=int, default=None, help=f"test subset (default all 10k; {QUICK['n_test']} with --quick)")
    p.add_argument("--quick", action="store_true", help="a subset, one seed: a few minutes on 2 CPU cores")
    p.add_argument("--jobs", type=int, default=1, help="models trained at once, each in its own process (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--resume", action="store_true", help="keep the finished runs of an earlier, identical run")
    p.add_argument("--report-only", action="store_true", help="no training: plot and tabulate the existing JSON")
    p.add_argument("--cpu-timing", action="store_true",
                   help="also measure each model's CPU seconds per epoch (a few steps each, one thread)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)

    quick = QUICK if args.quick else {}
    config = {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "models": list(dict.fromkeys(args.models)),
        "seeds": args.seeds or quick.get("seeds") or list(SEEDS),
        "epochs": args.epochs or quick.get("epochs") or EPOCHS,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "evals_per_epoch": args.evals_per_epoch,
        "target": args.target,
        "n_train": args.n_train or quick.get("n_train"),
        "n_test": args.n_test or quick.get("n_test"),
        "threads": args.threads,
        "device": args.device,
        "progress": not args.no_progress and args.jobs <= 1,
    }
    stem = "fashion_mnist" if args.dataset == "fashion-mnist" else args.dataset
    stem += "_quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = args.out / f"{stem}.json", args.out / f"{stem}.png"
    if args.report_only:
        results = json.loads(json_path.read_text())
    else:
        torch.set_num_threads(args.threads)
        idx_data.locate(args.dataset, Path(args.data_dir) if args.data_dir else None)  # fail before any training
        results = run_experiment(config, json_path, args.jobs, args.resume)
    if args.cpu_timing:
        n = config["n_train"] or 60_000
        results["cpu_seconds_per_epoch"] = {
            name: cpu_seconds_per_epoch(name, results["config"]["batch_size"], n) for name in results["models"]}
    plot(results, png_path)
    results["headline"] = headline(results)
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown_table(results))
    print(headline_text(results))
    print(f"wrote {json_path} and {png_path}")
    return results


if __name__ == "__main__":
    main()
