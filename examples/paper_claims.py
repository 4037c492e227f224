"""The paper's claims, checked on real data and on XOR.

Zamora Esquivel et al., "Adaptive Convolutional Kernels", ICCV Workshops 2019, claim
that an adaptive first layer lets a much smaller network reach the accuracy of a
LeNet-style CNN, in about half the training epochs, and that a single adaptive layer
solves XOR-like patterns that a linear convolution cannot. Two experiments:

1. Digits: scikit-learn's 8x8 handwritten digits (real scans shipped inside the
   package; nothing is downloaded), a fixed stratified train/test split. Three models:
   ``adaptive`` (the paper's idea: one AdaptiveConv2d layer, max-pool, one linear
   layer), ``lenet`` (a plain LeNet-style CNN sized for 8x8: two conv layers and two
   fully connected layers) and ``plain1`` (a control: the adaptive model's layout with
   a plain conv + ReLU instead, widened to the same parameter count). Reported:
   parameter counts, final test accuracy (at the last epoch, not the best one, so the
   test set selects nothing), and epochs to reach DIGITS_TARGET test accuracy.

2. XOR: 8x8 images of independent random +-1 pixels, labelled by the XOR of the
   signs of two fixed pixels (the other 62 pixels are noise). Every model is one conv
   layer followed by the *same linear head*, ``Flatten -> Linear(O*Ho*Wo, 2)``, with no
   nonlinearity anywhere except inside the layer being tested:

   - ``adaptive``: AdaptiveConv2d; its output is tanh(Q x + beta) . x per patch, a
     second-order function of the patch, so it can form the product of two pixels.
   - ``linear``: nn.Conv2d; conv and head compose to one affine function
     f(x) = w . x + b of the image, and the XOR of two +-1 pixels is not linearly
     separable: for any w, b and any fixed noise pixels,
     f(++) + f(--) = f(+-) + f(-+), so no affine f gets all four corners right
     (at most 3 of 4). Moreover the training set is closed under x -> -x (each image
     is present with its negation, same label, since negating flips both pixels and
     keeps their XOR), so the cross-entropy loss L(w, b) of an affine model satisfies
     L(w, b) = L(-w, b); being convex, L(0, b) <= L(w, b): the loss-optimal linear
     model is the constant w = 0, which scores exactly 50% on this balanced data.
   - ``conv_relu``: a control, nn.Conv2d + ReLU with the same head. It can solve XOR
     too (|p1 - p2| is a sum of two ReLUs). The claim tested is thus "one adaptive
     layer is itself nonlinear enough for XOR", not "adaptive beats conv + activation".

Run from the repository root: ``python -m examples.paper_claims`` (add ``--quick`` for a
smoke run, ``--device cuda`` or ``--device auto`` for a GPU). Writes
``paper_claims.json`` and ``paper_claims.png`` under ``--out`` (default: the untracked
results/; the committed results in examples/results/ change only with ``--out examples/results``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from adaptive_conv_ext import AdaptiveConv2d, available_backends

DIGITS_TARGET = 0.95  # test accuracy whose first crossing counts as "epochs to target"
SPLIT_SEED = 0  # the train/test split of the digits never changes
TEST_FRACTION = 0.25  # 1347 train / 450 test images
SEEDS = (0, 1, 2, 3, 4)  # model init + batch order; several, because one seed is an anecdote
XOR_PIXELS = ((3, 3), (4, 4))  # diagonal neighbours: both fall in the same 3x3 patch
XOR_IMAGE = 8
XOR_DATA_SEED = 1234
XOR_TARGET = 0.99

# Untracked (.gitignore): a run never overwrites the committed examples/results/ unless
# --out names it. The examples' one default.
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "results"


# --------------------------------------------------------------------------- setup


def set_determinism(seed: int) -> None:
    """Seed everything that draws random numbers and ask for deterministic kernels."""
    # cuBLAS needs this set before its first use to be deterministic.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    # warn_only: a few CUDA backward kernels (max-pool) have no deterministic version.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available here")
    return device


def adaptive_backend(device: torch.device) -> str:
    """Which implementation backend="auto" runs on `device` (the same order as the
    package's dispatch: native, then Triton on a GPU, then the reference)."""
    reasons = available_backends(device)
    if reasons["native"] is None:
        return "native"
    if device.type == "cuda" and reasons["triton"] is None:
        return "triton"
    return "reference"


def train_step(model, opt, loss_fn, xb, yb) -> float:
    """One optimiser step on a batch; returns the batch's summed loss."""
    loss = loss_fn(model(xb), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item() * len(yb)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------- data


def load_digits_split(
    n_train: Optional[int] = None, n_test: Optional[int] = None
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed stratified split of sklearn's digits: (x_train, y_train, x_test, y_test),
    images (N, 1, 8, 8) float32 in [0, 1]. n_train / n_test take stratified subsets
    (for fast tests)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # pixels are 0..16
    y = torch.tensor(digits.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(
        list(range(len(y))), test_size=TEST_FRACTION, stratify=digits.target, random_state=SPLIT_SEED
    )
    if n_train is not None and n_train < len(idx_train):
        idx_train, _ = train_test_split(
            idx_train, train_size=n_train, stratify=digits.target[idx_train], random_state=SPLIT_SEED
        )
    if n_test is not None and n_test < len(idx_test):
        idx_test, _ = train_test_split(
            idx_test, train_size=n_test, stratify=digits.target[idx_test], random_state=SPLIT_SEED
        )
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


def make_xor_data(
    n: int, seed: int = XOR_DATA_SEED, symmetric: bool = True, image_size: int = XOR_IMAGE,
    pixels: Sequence[Tuple[int, int]] = XOR_PIXELS,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """n images (N, 1, S, S) of independent +-1 pixels, label = XOR of the signs of the
    two `pixels`. Each pixel alone is independent of the label; only the pair is
    informative. The two pixels cycle through the four sign patterns, so classes and
    patterns are exactly balanced. symmetric=True appends each image's negation (same
    label), which makes the data set closed under x -> -x (see the module docstring);
    the result then has 2n images."""
    if n % 4:
        raise ValueError(f"n must be a multiple of 4 (the four sign patterns), got {n}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (n, 1, image_size, image_size), generator=g).float() * 2 - 1
    corners = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    c = corners[torch.randperm(n, generator=g) % 4]  # balanced, in random order
    (r1, c1), (r2, c2) = pixels
    x[:, 0, r1, c1] = c[:, 0]
    x[:, 0, r2, c2] = c[:, 1]
    y = (c[:, 0] != c[:, 1]).long()
    if symmetric:
        x, y = torch.cat([x, -x]), torch.cat([y, y])
    return x, y


# -------------------------------------------------------------------------- models


class AdaptiveDigitsNet(nn.Module):
    """The paper's idea at 8x8: one adaptive layer (its tanh is the only activation),
    max-pool, one linear classifier."""

    def __init__(self, channels: int = 4, n_classes: int = 10, backend: str = "auto"):
        super().__init__()
        self.features = nn.Sequential(
            AdaptiveConv2d(1, channels, 3, padding=1, backend=backend),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * 4 * 4, n_classes))

    def forward(self, x):
        return self.head(self.features(x))


class Plain1DigitsNet(nn.Module):
    """Control: AdaptiveDigitsNet's layout with a plain conv + ReLU, parameter-matched."""

    # 6 channels: 1,030 parameters against the adaptive model's 1,014, so that this
    # compares one adaptive layer with one plain layer at equal size.
    def __init__(self, channels: int = 6, n_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * 4 * 4, n_classes))

    def forward(self, x):
        return self.head(self.features(x))


class LeNet8(nn.Module):
    """LeNet-5's layout (conv-pool-conv-pool-fc-fc) scaled to 8x8 inputs."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(6, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4x4 -> 2x2
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 2 * 2, 32), nn.ReLU(), nn.Linear(32, n_classes)
        )

    def forward(self, x):
        return self.head(self.features(x))


DIGITS_MODELS = {
    "adaptive": AdaptiveDigitsNet,
    "lenet": LeNet8,
    "plain1": Plain1DigitsNet,
}


class OneLayerXorNet(nn.Module):
    """One conv-like layer, then the shared linear head Flatten -> Linear(O*Ho*Wo, 2)."""

    def __init__(self, layer: nn.Module, activation: Optional[nn.Module], out_features: int):
        super().__init__()
        self.layer = layer
        self.activation = activation if activation is not None else nn.Identity()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(out_features, 2))

    def forward(self, x):
        return self.head(self.activation(self.layer(x)))


XOR_KINDS = ("adaptive", "linear", "conv_relu")


def make_xor_model(kind: str, channels: int = 2, image_size: int = XOR_IMAGE, kernel_size: int = 3) -> nn.Module:
    ho = image_size - kernel_size + 1  # no padding: every output sees a full patch
    out_features = channels * ho * ho
    if kind == "adaptive":
        return OneLayerXorNet(AdaptiveConv2d(1, channels, kernel_size), None, out_features)
    if kind == "linear":
        return OneLayerXorNet(nn.Conv2d(1, channels, kernel_size), None, out_features)
    if kind == "conv_relu":
        return OneLayerXorNet(nn.Conv2d(1, channels, kernel_size), nn.ReLU(), out_features)
    raise ValueError(f"unknown XOR model {kind!r}; expected one of {XOR_KINDS}")


# ------------------------------------------------------------------------ training


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum().item()
    return correct / len(y)


def epochs_to_target(curve: Sequence[float], target: float, evals_per_epoch: int = 1) -> Optional[float]:
    """Epochs of training (1-based; fractions when the test accuracy was measured
    `evals_per_epoch` times per epoch) until the test accuracy first reaches `target`;
    None if it never does."""
    for i, acc in enumerate(curve, start=1):
        if acc >= target:
            return i if evals_per_epoch == 1 else i / evals_per_epoch
    return None


def train(
    model: nn.Module,
    data: Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    epochs: int,
    seed: int,
    device: torch.device = torch.device("cpu"),
    lr: float = 1e-2,
    batch_size: int = 32,
    desc: str = "",
    progress: bool = True,
    evals_per_epoch: int = 1,
    train_accuracy: bool = True,
) -> Dict:
    """Adam on cross-entropy; test accuracy `evals_per_epoch` times per epoch (evenly
    spaced in steps, the last at the epoch's end), train accuracy at each epoch's end
    unless `train_accuracy` is False (on a large training set it costs a third of an
    epoch). The batch order comes from its own generator seeded with `seed`, so a run
    is reproducible."""
    if evals_per_epoch < 1:
        raise ValueError(f"evals_per_epoch must be >= 1, got {evals_per_epoch}")
    x_train, y_train, x_test, y_test = (t.to(device) for t in data)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    curve: List[float] = []
    train_curve: List[float] = []
    losses: List[float] = []
    start = time.perf_counter()
    bar = _progress(range(epochs), desc=desc, disable=not progress)
    train_seconds = 0.0
    for _ in bar:
        total, n = 0.0, 0
        batches = torch.randperm(len(y_train), generator=g).split(batch_size)
        eval_after = {len(batches) * k // evals_per_epoch for k in range(1, evals_per_epoch + 1)}
        model.train()
        t0 = time.perf_counter()
        for step, idx in enumerate(batches, start=1):
            idx = idx.to(device)
            total += train_step(model, opt, loss_fn, x_train[idx], y_train[idx])
            n += len(idx)
            if step in eval_after:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                train_seconds += time.perf_counter() - t0  # optimisation steps only, no evaluation
                curve.append(accuracy(model, x_test, y_test))
                model.train()
                t0 = time.perf_counter()
        losses.append(total / n)
        if train_accuracy:
            train_curve.append(accuracy(model, x_train, y_train))
        if progress:
            bar.set_postfix(loss=f"{losses[-1]:.3f}", test_acc=f"{curve[-1]:.3f}")
    return {
        "seed": seed,
        "test_acc": curve,
        "train_acc": train_curve,
        "train_loss": losses,
        "evals_per_epoch": evals_per_epoch,
        "final_test_acc": curve[-1],
        "best_test_acc": max(curve),
        "seconds": time.perf_counter() - start,
        "train_seconds_per_epoch": train_seconds / max(epochs, 1),
    }


def _progress(iterable, desc: str, disable: bool):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the progress bar is a convenience, not a requirement
        return _NoBar(iterable)
    return tqdm(iterable, desc=desc, disable=disable, leave=True, dynamic_ncols=True, file=sys.stderr)


class _NoBar:
    def __init__(self, iterable):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, **kwargs):
        pass


# --------------------------------------------------------------------- experiments


def run_digits(
    epochs: int = 40,
    seeds: Sequence[int] = SEEDS,
    device: torch.device = torch.device("cpu"),
    models: Sequence[str] = tuple(DIGITS_MODELS),
    target: float = DIGITS_TARGET,
    n_train: Optional[int] = None,
    n_test: Optional[int] = None,
    lr: float = 1e-2,
    batch_size: int = 32,
    progress: bool = True,
) -> Dict:
    data = load_digits_split(n_train, n_test)
    out = {
        "target_test_acc": target,
        "n_train": len(data[1]),
        "n_test": len(data[3]),
        "lr": lr,
        "batch_size": batch_size,
        "epochs": epochs,
        "models": {},
    }
    for name in models:
        runs = []
        for seed in seeds:
            set_determinism(seed)  # the same init stream for every model at a given seed
            model = DIGITS_MODELS[name]()
            run = train(model, data, epochs, seed, device, lr, batch_size, f"digits {name} seed {seed}", progress)
            run["epochs_to_target"] = epochs_to_target(run["test_acc"], target)
            runs.append(run)
        out["models"][name] = {
            "params": count_params(DIGITS_MODELS[name]()),
            "description": (DIGITS_MODELS[name].__doc__ or "").split("\n")[0].strip(),
            "architecture": repr(DIGITS_MODELS[name]()),
            "runs": runs,
            **summarize(runs, target),
        }
    return out


def run_xor(
    epochs: int = 20,
    seeds: Sequence[int] = SEEDS,
    device: torch.device = torch.device("cpu"),
    kinds: Sequence[str] = XOR_KINDS,
    n_train: int = 1024,
    n_test: int = 2048,
    channels: int = 2,
    lr: float = 1e-2,
    batch_size: int = 64,
    progress: bool = True,
) -> Dict:
    """n_train images plus their negations for training (2 * n_train), n_test fresh
    images (not symmetrised, different seed) for testing."""
    x_train, y_train = make_xor_data(n_train, seed=XOR_DATA_SEED, symmetric=True)
    x_test, y_test = make_xor_data(n_test, seed=XOR_DATA_SEED + 1, symmetric=False)
    data = (x_train, y_train, x_test, y_test)
    out = {
        "pixels": [list(p) for p in XOR_PIXELS],
        "image_size": XOR_IMAGE,
        "n_train": len(y_train),
        "n_test": len(y_test),
        "channels": channels,
        "head": "Flatten -> Linear(channels*6*6, 2), no nonlinearity",
        "lr": lr,
        "batch_size": batch_size,
        "epochs": epochs,
        "target_test_acc": XOR_TARGET,
        "models": {},
    }
    for kind in kinds:
        runs = []
        for seed in seeds:
            set_determinism(seed)
            model = make_xor_model(kind, channels)
            run = train(model, data, epochs, seed, device, lr, batch_size, f"xor {kind} seed {seed}", progress)
            run["epochs_to_target"] = epochs_to_target(run["test_acc"], XOR_TARGET)
            runs.append(run)
        out["models"][kind] = {
            "params": count_params(make_xor_model(kind, channels)),
            "architecture": repr(make_xor_model(kind, channels)),
            "runs": runs,
            **summarize(runs, XOR_TARGET),
        }
    return out


def summarize(runs: List[Dict], target: Optional[float]) -> Dict:
    """Over seeds: final test accuracy (mean, population sd, range), epochs to target."""
    finals = [r["final_test_acc"] for r in runs]
    s = {
        "final_test_acc_mean": statistics.fmean(finals),
        "final_test_acc_std": statistics.pstdev(finals),
        "final_test_acc_min": min(finals),
        "final_test_acc_max": max(finals),
        "final_train_acc_mean": statistics.fmean(r["train_acc"][-1] for r in runs) if runs[0]["train_acc"] else None,
        "train_seconds_per_epoch_median": statistics.median(r["train_seconds_per_epoch"] for r in runs),
    }
    if target is not None:
        reached = [r["epochs_to_target"] for r in runs if r["epochs_to_target"] is not None]
        s["epochs_to_target"] = [r["epochs_to_target"] for r in runs]
        s["seeds_reaching_target"] = len(reached)
        s["epochs_to_target_median"] = statistics.median(reached) if len(reached) == len(runs) else None
    return s


# ------------------------------------------------------------------------- outputs


def plot(results: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    colors = {"adaptive": "tab:red", "lenet": "tab:blue", "plain1": "tab:gray", "linear": "tab:blue", "conv_relu": "tab:gray"}
    labels = {
        ("digits", "adaptive"): "adaptive: AdaptiveConv2d(1,4,3) + pool + linear",
        ("digits", "lenet"): "lenet: 2 conv + 2 fc, ReLU",
        ("digits", "plain1"): "plain1: Conv2d(1,6,3) + ReLU + pool + linear",
        ("xor", "adaptive"): "adaptive: AdaptiveConv2d(1,2,3) + linear head",
        ("xor", "linear"): "linear: Conv2d(1,2,3) + linear head",
        ("xor", "conv_relu"): "conv_relu: Conv2d(1,2,3) + ReLU + linear head",
    }
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, key, title in (
        (axes[0], "digits", "sklearn digits (8x8): test accuracy"),
        (axes[1], "xor", "XOR of two pixels: test accuracy (one layer + linear head)"),
    ):
        part = results[key]
        for name, m in part["models"].items():
            curves = torch.tensor([r["test_acc"] for r in m["runs"]])
            epochs = torch.arange(1, curves.shape[1] + 1)
            mean = curves.mean(0)
            label = (f"{labels.get((key, name), name)}\n    {m['params']:,} params, "
                     f"final {m['final_test_acc_mean'] * 100:.1f}%")
            ax.plot(epochs, mean, color=colors.get(name), lw=2, label=label)
            if curves.shape[0] > 1:  # the spread over seeds, min to max
                ax.fill_between(epochs, curves.min(0).values, curves.max(0).values, color=colors.get(name), alpha=0.2)
        if key == "digits":
            ax.axhline(part["target_test_acc"], color="k", ls="--", lw=1, label=f"target {part['target_test_acc']:.0%}")
            lowest = min(min(r["test_acc"]) for m in part["models"].values() for r in m["runs"])
            ax.set_ylim(min(0.8, int(lowest * 10) / 10), 1.0)  # every curve fully visible
        else:
            ax.axhline(0.5, color="k", ls=":", lw=1, label="chance")
            ax.set_ylim(0.2, 1.02)  # room below chance for the legend
        n_seeds = len(next(iter(part["models"].values()))["runs"])
        ax.set_title(title, fontsize=11)
        ax.set_xlabel(f"epoch (mean of {n_seeds} seed{'s' if n_seeds > 1 else ''}; band: min-max)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="lower right", fontsize=8.5)
    backend = results["adaptive_backend"]
    save_figure(fig, path, f"Adaptive convolution (Zamora Esquivel et al. 2019) vs plain convolution; "
                f"Adam lr {results['digits']['lr']:g}; device {results['device']}, adaptive backend '{backend}'")


def save_figure(fig, path: Path, title: str, fontsize: float = 11) -> None:
    """Title, tight layout, PNG at 120 dpi, and the figure closed."""
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (/proc/cpuinfo; else what platform knows)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> Dict:
    return {
        "device": str(device),
        "device_name": device_name(device),
        "adaptive_backend": adaptive_backend(device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def print_summary(results: Dict) -> None:
    d = results["digits"]
    print(f"\nDigits: {d['n_train']} train / {d['n_test']} test, {d['epochs']} epochs, "
          f"target {d['target_test_acc']:.0%}, seeds {results['seeds']}")
    print(f"{'model':<10}{'params':>8}  {'final test acc (mean +- sd)':<30}{'epochs to target (per seed)'}")
    for name, m in d["models"].items():
        print(f"{name:<10}{m['params']:>8}  {m['final_test_acc_mean'] * 100:6.2f} +- {m['final_test_acc_std'] * 100:4.2f} %"
              f"{'':<14}{m['epochs_to_target']}   ({m['train_seconds_per_epoch_median']:.2f} s/epoch)")
    x = results["xor"]
    print(f"\nXOR: {x['n_train']} train / {x['n_test']} test, {x['epochs']} epochs")
    for name, m in x["models"].items():
        print(f"{name:<10}{m['params']:>8}  test {m['final_test_acc_mean'] * 100:6.2f} % "
              f"(min {m['final_test_acc_min'] * 100:.2f}, max {m['final_test_acc_max'] * 100:.2f}), "
              f"train {m['final_train_acc_mean'] * 100:.2f} %, epochs to {x['target_test_acc']:.0%}: {m['epochs_to_target']}")
    print(f"\n{results['elapsed_seconds']:.0f} s on {results['device']} (adaptive backend: {results['adaptive_backend']})")


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="output folder (default: results/, untracked; the committed results are examples/results/)")
    p.add_argument("--epochs", type=int, default=None, help="digits epochs (default 40; 5 with --quick)")
    p.add_argument("--xor-epochs", type=int, default=None, help="XOR epochs (default 20; 5 with --quick)")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate, every model (default 1e-2)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help=f"seeds (default {list(SEEDS)}; [0] with --quick)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, or auto (cuda if available)")
    p.add_argument("--quick", action="store_true", help="a smoke run: few epochs, one seed, data subsets")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: these models are so small that more threads "
                        "mostly add synchronisation, and on a busy machine cost 10x)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    seeds = tuple(args.seeds) if args.seeds else ((0,) if args.quick else SEEDS)
    digits_epochs = args.epochs or (5 if args.quick else 40)
    xor_epochs = args.xor_epochs or (5 if args.quick else 20)
    subset = {"n_train": 400, "n_test": 200} if args.quick else {}
    xor_sizes = {"n_train": 512, "n_test": 1024} if args.quick else {}

    start = time.perf_counter()
    results = {"experiment": "paper_claims", "quick": args.quick, "seeds": list(seeds), **environment(device)}
    progress = not args.no_progress
    results["digits"] = run_digits(digits_epochs, seeds, device, lr=args.lr, progress=progress, **subset)
    results["xor"] = run_xor(xor_epochs, seeds, device, lr=args.lr, progress=progress, **xor_sizes)
    results["elapsed_seconds"] = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    stem = "paper_claims_quick" if args.quick else "paper_claims"
    json_path, png_path = args.out / f"{stem}.json", args.out / f"{stem}.png"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, png_path)
    print_summary(results)
    print(f"wrote {json_path} and {png_path}")
    return results


if __name__ == "__main__":
    main()
