"""What `tinytrain fit` and `tinytrain run` print and write: the accuracy curve per epoch,
report.json and the curve as a PNG (matplotlib, of the optional extra `train`)."""
from __future__ import annotations

import json
from pathlib import Path


def curve_line(row) -> str:
    """One printed row of an accuracy curve: (epoch, mean train loss or None, accuracy)."""
    epoch, loss, acc = row
    loss_s = "    -   " if loss is None else f"{loss:8.4f}"
    return f"epoch {epoch:3d}  train loss {loss_s}  test accuracy {100 * acc:6.2f} %"


def curve_json(curve) -> list:
    return [{"epoch": int(e), "train_loss": None if loss is None else float(loss),
             "test_accuracy": float(a)} for e, loss, a in curve]


def write(out_dir, report: dict, curves: dict, title: str) -> list:
    """report.json and accuracy.png (one line per curve: label -> curve) in out_dir; returns
    the paths written (the PNG only where matplotlib is installed, said on stdout otherwise)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    written = [out / "report.json"]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"no {out / 'accuracy.png'}: matplotlib is not installed "
              f"(pip install 'tinyengine[train]')")
        return written
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        ax.plot([r[0] for r in curve], [100 * r[2] for r in curve], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=100)
    plt.close(fig)
    return written + [out / "accuracy.png"]
