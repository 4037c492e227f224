"""PNG of a results dict: per case, time (fwd and fwd+bwd) and peak memory per implementation."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

SHORT = {"native": "native", "triton": "triton", "reference": "reference", "compiled": "ref+compile",
         "paper": "paper loop", "conv2d": "F.conv2d"}
COLORS = {"native": "#1f77b4", "triton": "#9467bd", "reference": "#d62728", "compiled": "#ff7f0e",
          "paper": "#8c564b", "conv2d": "#7f7f7f"}


def _mark_missing(ax, x, r) -> None:
    """Write why there is no bar ('oom', 'skipped', ...) where the bar would be."""
    ax.text(x, 0.03, r["status"] if r["status"] != "ok" else "n/a", rotation=90, ha="center", va="bottom",
            fontsize=8, color="#444", transform=ax.get_xaxis_transform())


def _label(ax, x, top, ratio) -> None:
    """The fwd+bwd ratio to native above the pair of bars (`top`: the taller one)."""
    if ratio is not None:
        text = f"{ratio:.2g}x" if ratio < 100 else f"{ratio:.0f}x"
        ax.text(x, top * 1.15, text, ha="center", va="bottom", fontsize=7.5)


def plot(results: dict, path: str) -> None:
    cases = results["cases"]
    ncol = len(cases)
    fig, axes = plt.subplots(2, ncol, figsize=(max(6.0, 3.4 * ncol), 7.6), squeeze=False)
    width = 0.38
    for col, case in enumerate(cases):
        rs = case["results"]
        xs = list(range(len(rs)))
        ax_t, ax_m = axes[0][col], axes[1][col]
        for x, r in zip(xs, rs):
            c = COLORS.get(r["impl"], "#333")
            if r["status"] == "ok":
                ax_t.bar(x - width / 2, r["fwd_s"] * 1e3, width, color=c, alpha=0.55)
                ax_t.bar(x + width / 2, r["fwdbwd_s"] * 1e3, width, color=c)
                _label(ax_t, x, max(r["fwd_s"], r["fwdbwd_s"]) * 1e3, r.get("ratio_fwdbwd"))
            else:
                _mark_missing(ax_t, x, r)
            m = r.get("memory") or {}
            if m.get("status") == "ok":
                # log axis: a peak below 1 KiB is drawn at 1 KiB
                ax_m.bar(x - width / 2, max(m["fwd_bytes"], 1024) / 2**20, width, color=c, alpha=0.55)
                ax_m.bar(x + width / 2, max(m["fwdbwd_bytes"], 1024) / 2**20, width, color=c)
                _label(ax_m, x, max(m["fwd_bytes"], m["fwdbwd_bytes"], 1024) / 2**20, r.get("mem_ratio_fwdbwd"))
            else:
                _mark_missing(ax_m, x, r if r["status"] != "ok" else {"status": m.get("status", "n/a")})
        spec_n = f" (SPEC {case['N_spec']})" if case["N"] != case["N_spec"] else ""
        grads = f"\nf+b: {case['grads']}" if case.get("grads") else ""
        title = f"{case['name']}\nN={case['N']}{spec_n}, {case['dtype']}{grads}"
        ax_t.set_title(title, fontsize=10)
        for ax in (ax_t, ax_m):
            ax.set_yscale("log")
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo, hi * 4)  # head room for the ratio labels
            ax.set_xticks(xs)
            ax.set_xticklabels([SHORT.get(r["impl"], r["impl"]) for r in rs], rotation=40, ha="right", fontsize=9)
            ax.grid(axis="y", which="major", alpha=0.3)
            ax.set_xlim(-0.6, len(rs) - 0.4)
        if col == 0:
            ax_t.set_ylabel("median time, ms (log)")
            ax_m.set_ylabel("peak memory above inputs, MiB (log)\n(< 1 KiB drawn at 1 KiB)")
    dev = results["device"]
    mem_how = "child RSS" if dev["type"] == "cpu" else "max_memory_allocated"
    fig.suptitle(f"adaptive_conv2d on {dev['name']} ({dev['type']}, {results['date'][:10]}): "
                 f"time and peak memory ({mem_how})", fontsize=11, y=0.995)
    fig.legend(handles=[Patch(color="#555", alpha=0.55, label="forward (no_grad)"),
                        Patch(color="#555", label="forward+backward (label: ratio to native)")],
               loc="upper center", bbox_to_anchor=(0.5, 0.955), fontsize=9, ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    # re-draw a PNG from a results JSON: python -m benchmarks.plot results.json [out.png]
    import json
    import sys

    src = sys.argv[1]
    with open(src) as f:
        plot(json.load(f), sys.argv[2] if len(sys.argv) > 2 else src[: -len(".json")] + ".png")
