"""examples/fashion_mnist.py and examples/idx_data.py: the IDX reader, how the data are
found (and the error when they are not), the model family's sizes, and a short run of
the quick mode on a small subset in which every model must learn well above chance.

The tests on real images need Fashion-MNIST (scripts/install.sh installs the Debian
package dataset-fashion-mnist). In CI (the CI environment variable set, as .ci/run
does) missing data is a failure; elsewhere those tests skip and say why.
"""

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import examples.fashion_mnist as fm  # tests/conftest.py puts the repository root on sys.path
from examples import idx_data

pytestmark = [
    pytest.mark.filterwarnings("ignore:adaptive_conv2d. no fused backend:RuntimeWarning"),
    pytest.mark.usefixtures("one_thread_restoring_torch_globals"),  # tests/conftest.py
]


def _fashion_mnist_folder():
    try:
        return idx_data.locate("fashion-mnist", download=False)
    except FileNotFoundError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have Fashion-MNIST (scripts/install.sh installs it): {e}")
        pytest.skip(f"Fashion-MNIST is not installed here (apt-get install dataset-fashion-mnist): {e}")


def _write_idx(path: Path, array: np.ndarray, code: int = 0x08) -> None:
    header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.dtype(idx_data._IDX_DTYPES[code])).tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)


def _fake_dataset(folder: Path, n_train: int = 40, n_test: int = 20, gz: bool = True) -> None:
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = idx_data.SPLIT_FILES[split]
        _write_idx(folder / (images + suffix), rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _write_idx(folder / (labels + suffix), np.arange(n, dtype=np.uint8) % 10)


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_read_idx_round_trip(tmp_path, name):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / name, a)
    assert np.array_equal(idx_data.read_idx(tmp_path / name), a)
    b = np.array([[1.5, -2.0]], dtype=np.float32)
    _write_idx(tmp_path / "f", b, code=0x0D)  # big-endian float32
    assert np.array_equal(idx_data.read_idx(tmp_path / "f"), b)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        idx_data.read_idx(tmp_path / "bad")
    _write_idx(tmp_path / "short", np.zeros((4, 2), np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match="asks for"):
        idx_data.read_idx(tmp_path / "short")


@pytest.mark.parametrize("gz", [True, False])
def test_load_from_data_dir(tmp_path, gz):
    _fake_dataset(tmp_path, gz=gz)
    x, y, xt, yt = idx_data.load(data_dir=tmp_path, n_train=20)
    assert x.shape == (20, 1, 28, 28) and x.dtype == torch.float32 and xt.shape == (20, 1, 28, 28)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert torch.bincount(y, minlength=10).tolist() == [2] * 10  # class-balanced subset
    # torchvision's layout, <root>/FashionMNIST/raw, is found below --data-dir too.
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    _fake_dataset(raw, gz=gz)
    assert idx_data.locate(data_dir=tmp_path / "tv") == raw


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        idx_data.locate(data_dir=tmp_path)  # named explicitly and empty: nothing else is tried
    monkeypatch.setattr(idx_data, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(idx_data, "_debian_folder", lambda package, usual: [tmp_path / "nothing"])
    with pytest.raises(FileNotFoundError) as e:
        idx_data.locate("fashion-mnist", download=False)
    message = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message and "torchvision" in message
    with pytest.raises(ValueError, match="dataset must be one of"):
        idx_data.locate("cifar")


def test_model_family_sizes():
    params = {name: fm.count_params(fm.make_model(name)) for name in fm.MODELS}
    assert params["lenet5"] == fm.LENET5_PARAMS == 61_706  # the classic LeNet-5
    for name, (kind, c1, c2, side) in fm.FAMILY.items():
        if kind == "adaptive":
            # Two adaptive 3x3 layers (81 generator weights + 9 kernel biases per channel
            # pair, + 1 output bias per channel) and the linear head.
            assert params[name] == 90 * c1 + c1 + 90 * c1 * c2 + c2 + c2 * side * side * 10 + 10
            control = params[name.replace("adaptive", "plain")]
            assert abs(control - params[name]) <= 0.01 * params[name], name
    ratios = [params["lenet5"] / params[n] for n in fm.FAMILY if n.startswith("adaptive")]
    assert min(ratios) < 3.5 and max(ratios) > 50  # the span: about 3x to 70x fewer


def test_models_take_28x28_images():
    x = torch.rand(2, 1, 28, 28)
    for name in fm.MODELS:
        assert fm.make_model(name)(x).shape == (2, 10), name
    with pytest.raises(ValueError, match="unknown model"):
        fm.make_model("resnet")


def _record(test_acc, val_acc, per=2, targets=(0.85, 0.88), finished=True, seed=0):
    # A run's record as train_run writes it: cumulative training CPU/wall seconds at
    # each test evaluation (here 10 CPU s and 20 wall s per evaluation).
    n = len(test_acc)
    return {"seed": seed, "config": {"evals_per_epoch": per, "targets": list(targets)}, "test_acc": test_acc,
            "val_acc": val_acc, "train_cpu_s": [10.0 * (i + 1) for i in range(n)],
            "train_wall_s": [20.0 * (i + 1) for i in range(n)], "epochs_done": n // per, "finished": finished}


def test_run_summary_times_to_target_and_selects_on_validation():
    r = _record([0.80, 0.86, 0.87, 0.89, 0.90, 0.88], val_acc=[0.85, 0.91, 0.91])
    s = fm.run_summary(r)
    assert s["to"]["0.85"] == {"epochs": 1.0, "train_cpu_s": 20.0, "train_wall_s": 40.0}  # 2nd of 2 per epoch
    assert s["to"]["0.88"] == {"epochs": 2.0, "train_cpu_s": 40.0, "train_wall_s": 80.0}
    # The first epoch with the best validation accuracy (2), and the test accuracy at its end.
    assert s["selected_epoch"] == 2 and s["selected_test_acc"] == 0.89 and s["final_test_acc"] == 0.88
    assert s["train_cpu_s_per_epoch"] == 20.0
    never = fm.run_summary(_record([0.5, 0.6], val_acc=[]))
    assert never["to"]["0.85"]["epochs"] is None and never["selected_test_acc"] is None


def test_split_validation_and_schedule():
    y = torch.arange(100) % 10
    x = torch.arange(100, dtype=torch.float32).view(100, 1, 1, 1)
    xt, yt, xv, yv = fm.split_validation(x, y, 20)
    assert len(yt) == 80 and torch.bincount(yv).tolist() == [2] * 10  # class-balanced
    assert set(xt.flatten().tolist()).isdisjoint(xv.flatten().tolist())
    assert torch.equal(fm.split_validation(x, y, 20)[2], xv)  # fixed, whatever the training seed
    assert len(fm.split_validation(x, y, 0)[3]) == 0
    with pytest.raises(ValueError, match="n_val"):
        fm.split_validation(x, y, 100)
    assert fm.learning_rate("cosine", 1.0, 0, 10) == 1.0 and fm.learning_rate("cosine", 1.0, 5, 10) == pytest.approx(0.5)
    assert fm.learning_rate("cosine", 1.0, 9, 10) < 0.03 and fm.learning_rate("constant", 0.1, 9, 10) == 0.1
    with pytest.raises(ValueError, match="schedule"):
        fm.learning_rate("step", 1.0, 0, 10)


def test_real_data_is_fashion_mnist():
    folder = _fashion_mnist_folder()
    x, y, xt, yt = idx_data.load("fashion-mnist", folder)
    assert x.shape == (60000, 1, 28, 28) and xt.shape == (10000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [6000] * 10 and torch.bincount(yt).tolist() == [1000] * 10


def test_quick_mode_every_model_learns(tmp_path):
    # The quick mode on a small subset (2000 train images, 400 of them held out for
    # validation, 500 test; 3 epochs of cosine decay, batch 32), one seed. Chance is 10%;
    # each model must pass 35%. Measured here at seed 0: 61% (plain-xs, the weakest) to
    # 82% (adaptive-l); about 20 CPU-seconds in all.
    pytest.importorskip("matplotlib")
    folder = _fashion_mnist_folder()
    results = fm.main([
        "--quick", "--data-dir", str(folder), "--n-train", "2000", "--n-test", "500", "--n-val", "400",
        "--epochs", "3", "--batch-size", "32", "--evals-per-epoch", "1", "--out", str(tmp_path),
        "--checkpoints", str(tmp_path / "runs"), "--no-progress", "--cpu-timing",
    ])
    saved = json.loads((tmp_path / "fashion_mnist_convergence_quick.json").read_text())
    assert (tmp_path / "fashion_mnist_convergence_quick.png").stat().st_size > 10_000
    assert set(saved["models"]) == set(fm.MODELS) and saved["config"]["n_train"] == 2000
    for name, m in results["models"].items():
        run = m["runs"][0]
        assert run["finished"] and len(run["test_acc"]) == 3 and len(run["val_acc"]) == 3, name
        assert m["params"] > 0 and saved["cpu_seconds_per_epoch"][name] > 0 and run["train_cpu_s"][-1] > 0, name
        assert run["lr_at_epoch_end"][-1] < 1e-3 * saved["config"]["lr"]  # cosine: decayed to about 0
        assert run["test_acc"][-1] > 0.35, f"{name}: test accuracy {run['test_acc']} (chance is 0.1)"
        assert (tmp_path / "runs" / f"{name}_seed0" / "checkpoint.pt").exists()
    session = json.loads((tmp_path / "runs" / "sessions.jsonl").read_text().splitlines()[-1])
    assert session["cpu_s"] > 0 and saved["sessions"][-1] == session


def _quick_args(folder, out, *extra):
    return ["--quick", "--data-dir", str(folder), "--models", "lenet5", "adaptive-xs", "--n-train", "600",
            "--n-test", "300", "--n-val", "100", "--epochs", "2", "--batch-size", "50", "--out", str(out),
            "--checkpoints", str(out / "runs"), *extra]


def test_an_interrupted_run_continues_where_it_stopped(tmp_path, capsys):
    # Epoch 1 of a 2-epoch schedule, then a second call: it must train epoch 2 only, from
    # the checkpoint, and end exactly where an uninterrupted run ends.
    pytest.importorskip("matplotlib")
    folder = _fashion_mnist_folder()
    fm.main(_quick_args(folder, tmp_path / "split", "--stop-after", "1"))
    first = capsys.readouterr().out
    part = {name: json.loads((tmp_path / "split" / "runs" / f"{name}_seed0" / "run.json").read_text())
            for name in ("lenet5", "adaptive-xs")}
    assert all(r["epochs_done"] == 1 and not r["finished"] and len(r["test_acc"]) == 2 for r in part.values())
    resumed = fm.main(_quick_args(folder, tmp_path / "split"))
    second = capsys.readouterr().out
    assert "epoch  1/2" in first and "epoch  2/2" not in first
    assert "epoch  2/2" in second and "epoch  1/2" not in second  # continued, not restarted
    straight = fm.main(_quick_args(folder, tmp_path / "straight"))
    for name in ("lenet5", "adaptive-xs"):
        a, b = resumed["models"][name]["runs"][0], straight["models"][name]["runs"][0]
        assert a["resumed_at_epochs"] == [1] and b["resumed_at_epochs"] == [], name
        assert a["test_acc"] == b["test_acc"] and a["val_acc"] == b["val_acc"], name
        assert a["train_loss"] == b["train_loss"] and a["train_cpu_s"][:2] == part[name]["train_cpu_s"], name
    log = (tmp_path / "split" / "runs" / "progress.log").read_text()
    assert log.count("lenet5       seed 0 epoch") == 2
    # A third call has nothing left to train; another schedule in the same folder is refused.
    capsys.readouterr()
    fm.main(_quick_args(folder, tmp_path / "split"))
    assert ": loss" not in capsys.readouterr().out  # no epoch trained
    with pytest.raises(RuntimeError, match="another configuration"):
        fm.main(_quick_args(folder, tmp_path / "split", "--lr", "1e-3"))


def test_constant_schedule_without_validation_trains_as_the_2_epoch_study(tmp_path):
    # --schedule constant --n-val 0 must train exactly as paper_claims.train, the loop of
    # the earlier 2-epoch study (examples/results/fashion_mnist.json).
    from examples import paper_claims as pc

    folder = _fashion_mnist_folder()
    config = {"dataset": "fashion-mnist", "data_dir": str(folder), "n_train": 400, "n_test": 200, "n_val": 0,
              "epochs": 2, "schedule": "constant", "lr": 3e-3, "batch_size": 50, "evals_per_epoch": 2,
              "targets": [0.85], "threads": 1, "device": "cpu", "progress": False}
    record = fm.train_run("adaptive-xs", 1, config, tmp_path)
    pc.set_determinism(1)
    data = idx_data.load("fashion-mnist", folder, 400, 200)
    old = pc.train(fm.make_model("adaptive-xs"), data, 2, 1, lr=3e-3, batch_size=50, progress=False,
                   evals_per_epoch=2, train_accuracy=False)
    assert record["test_acc"] == old["test_acc"] and record["train_loss"] == old["train_loss"]


def test_headline_picks_the_smallest_adaptive_network_within_one_point():
    def model(kind, params, acc, first_above):
        # Test accuracy per evaluation (1 per epoch): below 0.85 until `first_above`.
        curve = [0.5] * (first_above - 1) + [acc] * (4 - first_above + 1) if first_above else [0.5, 0.6, 0.7, acc]
        runs = [{**_record(curve, [], per=1), **fm.run_summary(_record(curve, [], per=1))}]
        return {"kind": kind, "params": params, "runs": runs, **fm.model_summary(runs, (0.85, 0.88))}

    results = {"config": {"targets": [0.85, 0.88]}, "models": {
        "lenet5": model("lenet5", 60_000, 0.900, 2),
        "adaptive-a": model("adaptive", 1_000, 0.880, None),  # 2 points below: too far
        "adaptive-b": model("adaptive", 3_000, 0.8905, 1),  # 0.95 below: the smallest within 1
        "adaptive-c": model("adaptive", 9_000, 0.905, 1),
        "plain-a": model("plain", 9_000, 0.85, 3),
    }}
    h = fm.headline(results)
    assert h["adaptive"]["model"] == "adaptive-b" and h["adaptive"]["param_ratio"] == 20.0
    assert h["adaptive"]["to"]["0.85"]["epochs_median"] == 1 and h["lenet5"]["to"]["0.85"]["epochs_median"] == 2
    assert h["adaptive"]["to"]["0.85"]["train_cpu_s_median"] == 10.0 and h["adaptive"]["to"]["0.88"]["epochs"] == [1]
    assert h["plain"] is None
    assert "adaptive-b" in fm.headline_text(results) and "no plain network" in fm.headline_text(results)
    table = fm.markdown_table(results)
    assert table.count("\n") == 1 + 5 and "| adaptive-b | 3,000 | 20.0x | 1 |" in table
