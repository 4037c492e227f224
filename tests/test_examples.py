"""Short runs of examples/paper_claims.py: the digits models learn, and on XOR one
adaptive layer + a linear head learns while one linear conv + the same head stays at
chance. Small subsets and few epochs, fixed seeds: seconds on a 2-core CPU.

Needs scikit-learn (the digits) and matplotlib (the plot of the --quick run).
"""

import json

import pytest
import torch

pytest.importorskip("sklearn")

import examples.paper_claims as pc  # tests/conftest.py puts the repository root on sys.path

# The reference fallback is expected where the extension is not built.
pytestmark = [
    pytest.mark.filterwarnings("ignore:adaptive_conv2d. no fused backend:RuntimeWarning"),
    pytest.mark.usefixtures("one_thread_restoring_torch_globals"),  # tests/conftest.py
]


def test_parameter_counts():
    # RESULTS.md quotes these; a change to a model must show up here.
    assert pc.count_params(pc.AdaptiveDigitsNet()) == 4 * 81 + 4 * 9 + 4 + 4 * 16 * 10 + 10 == 1014
    assert pc.count_params(pc.LeNet8()) == 3350
    assert pc.count_params(pc.Plain1DigitsNet()) == 1030
    assert pc.count_params(pc.make_xor_model("adaptive")) == 2 * 81 + 2 * 9 + 2 + 2 * 36 * 2 + 2 == 328
    assert pc.count_params(pc.make_xor_model("linear")) == 2 * 9 + 2 + 2 * 36 * 2 + 2 == 166


def test_digits_split_is_fixed_and_stratified():
    x_tr, y_tr, x_te, y_te = pc.load_digits_split()
    assert x_tr.shape == (1347, 1, 8, 8) and x_te.shape == (450, 1, 8, 8)
    assert 0.0 <= x_tr.min() and x_tr.max() <= 1.0
    # Every class is in the test set in (about) its overall proportion, ~45 each.
    assert torch.bincount(y_te, minlength=10).min() >= 43
    again = pc.load_digits_split()
    assert torch.equal(again[1], y_tr) and torch.equal(again[2], x_te)


@pytest.mark.parametrize("model, epochs", [("adaptive", 3), ("lenet", 6)])
def test_digits_learn_well_above_chance(model, epochs):
    # Measured over seeds 0-3 at these settings: adaptive >= 0.86, lenet >= 0.76.
    r = pc.run_digits(epochs=epochs, seeds=(0,), models=(model,), n_train=400, n_test=200, progress=False)
    acc = r["models"][model]["runs"][0]["final_test_acc"]
    assert acc > 0.6, f"{model}: {acc:.3f} after {epochs} epochs (chance is 0.1)"


def test_xor_data_has_only_pairwise_information():
    x, y = pc.make_xor_data(64, symmetric=True)
    assert x.shape == (128, 1, 8, 8) and set(x.unique().tolist()) == {-1.0, 1.0}
    (r1, c1), (r2, c2) = pc.XOR_PIXELS
    p1, p2 = x[:, 0, r1, c1], x[:, 0, r2, c2]
    assert torch.equal(y, (p1 != p2).long())
    # Balanced classes, and each informative pixel alone says nothing about the label.
    assert (y == 1).sum() == 64
    for p in (p1, p2):
        assert ((p > 0) & (y == 1)).sum() == ((p < 0) & (y == 1)).sum() == 32
    # Closed under negation with the same label: the symmetry behind the linear claim.
    assert torch.equal(x[64:], -x[:64]) and torch.equal(y[64:], y[:64])


def test_loss_optimal_linear_model_is_chance():
    # The argument in the module docstring, checked directly: logistic regression on
    # the raw images (any linear conv + linear head is such a model), started away
    # from zero, converges to w = 0, the constant classifier.
    x, y = pc.make_xor_data(512, symmetric=True)
    x = x.flatten(1).double()
    g = torch.Generator().manual_seed(0)
    w = torch.randn(x.shape[1], generator=g, dtype=torch.float64).requires_grad_()
    b = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    assert w.detach().abs().max() > 1.0
    opt = torch.optim.LBFGS(
        [w, b], max_iter=200, tolerance_grad=1e-12, tolerance_change=0.0, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y.double())
        loss.backward()
        return loss

    opt.step(closure)
    assert w.detach().abs().max() < 1e-6 and abs(b.item()) < 1e-6


def test_xor_adaptive_learns_linear_does_not():
    # Margins, measured over seeds 0-4 at these settings: adaptive >= 0.95, linear within
    # 0.03 of 0.5 (the binomial sd of chance on 2048 test images is 0.011).
    r = pc.run_xor(epochs=5, seeds=(0,), kinds=("adaptive", "linear"), n_train=512, n_test=2048, progress=False)
    adaptive = r["models"]["adaptive"]["runs"][0]["final_test_acc"]
    linear = r["models"]["linear"]["runs"][0]["final_test_acc"]
    assert adaptive > 0.9, adaptive
    assert abs(linear - 0.5) < 0.06, linear
    assert adaptive - linear > 0.3


def test_training_is_deterministic():
    def once():
        pc.set_determinism(3)
        model = pc.make_xor_model("adaptive")
        data = (*pc.make_xor_data(64), *pc.make_xor_data(64, seed=7, symmetric=False))
        return pc.train(model, data, epochs=2, seed=3, progress=False)

    a, b = once(), once()
    assert a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]


def test_quick_run_writes_json_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    pc.main(["--quick", "--epochs", "2", "--xor-epochs", "2", "--out", str(tmp_path), "--no-progress"])
    results = json.loads((tmp_path / "paper_claims_quick.json").read_text())
    assert (tmp_path / "paper_claims_quick.png").stat().st_size > 10_000
    for key in ("seeds", "device", "torch_version", "date", "adaptive_backend", "digits", "xor"):
        assert key in results
    for name in ("adaptive", "lenet", "plain1"):
        m = results["digits"]["models"][name]
        assert len(m["runs"][0]["test_acc"]) == 2 and m["params"] > 0 and "epochs_to_target" in m
    assert set(results["xor"]["models"]) == {"adaptive", "linear", "conv_relu"}


def test_results_go_to_an_untracked_directory_by_default():
    """The examples never overwrite the committed examples/results/ unless --out names it."""
    import subprocess
    from pathlib import Path

    import examples.fashion_mnist as fm

    root = Path(pc.__file__).resolve().parent.parent
    assert pc.DEFAULT_OUT == fm.DEFAULT_OUT == root / "results"
    if (root / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "-q", str(pc.DEFAULT_OUT / "paper_claims.json")], cwd=root)
        assert ignored.returncode == 0, "results/ must be ignored by git"
