"""End to end: PyTorch -> ONNX -> TinyEngine -> STM32F746 firmware under QEMU.

    python examples/onnx_digits/example.py [--board stm32f746] [--out DIR] [--epochs 12]

1. trains the small MobileNetV2-like network of digits_net.py on scikit-learn's digits
   (8x8 upsampled to 16x16) for a few seconds;
2. exports it with torch.onnx.export (the legacy exporter, and the default dynamo exporter to
   show that both compile) and makes QDQ int8 copies with onnxruntime's quantize_static;
3. compiles the QDQ files and the float files (quantized by TinyEngine from calibration data),
   runs them on the emulated board on the held-out digits, and prints int8 accuracy next to
   the float model's, with the top-1 agreement with onnxruntime.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import digits_net  # noqa: E402

from tinyengine.cli import main as tinyengine  # noqa: E402


def run_on_board(model: Path, x: Path, out: Path, board: str, extra: list) -> np.ndarray:
    y = out / f"{model.stem}_logits.npy"
    rc = tinyengine(["run", str(model), "--board", board, "--input", str(x), "--output", str(y),
                     "-o", str(out / model.stem)] + extra)
    if rc != 0:
        sys.exit(rc)
    return np.load(y).reshape(-1, 10)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="stm32f746")
    ap.add_argument("--out", help="folder for the models and projects (default: a temporary one)")
    ap.add_argument("--epochs", type=int, default=12)
    args = ap.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="onnx-digits-"))
    out.mkdir(parents=True, exist_ok=True)

    data = digits_net.load_data()
    model = digits_net.train(data, epochs=args.epochs)
    f32, dyn, qdq = out / "digits.onnx", out / "digits_dynamo.onnx", out / "digits_qdq.onnx"
    dyn_qdq = out / "digits_dynamo_qdq.onnx"
    digits_net.export_onnx(model, f32, dynamo=False)
    digits_net.export_onnx(model, dyn, dynamo=True)
    digits_net.quantize_qdq(f32, qdq, data.x_calib)
    digits_net.quantize_qdq(dyn, dyn_qdq, data.x_calib)
    np.save(out / "x_test.npy", data.x_test)
    np.save(out / "y_test.npy", data.y_test)
    np.save(out / "calibration.npy", data.x_calib)

    acc = {"PyTorch float": digits_net.accuracy_torch(model, data.x_test, data.y_test)}
    ort = {m.name: digits_net.onnxruntime_predict(m, data.x_test) for m in (f32, qdq, dyn_qdq)}
    acc["onnxruntime float"] = float(np.mean(ort[f32.name] == data.y_test))
    acc["onnxruntime QDQ int8"] = float(np.mean(ort[qdq.name] == data.y_test))
    calib = ["--calibration", str(out / "calibration.npy")]
    agree = {}
    for name, path, extra in (("TinyEngine int8 (QDQ file)", qdq, []),
                              ("TinyEngine int8 (dynamo export, QDQ file)", dyn_qdq, []),
                              ("TinyEngine int8 (float file + calibration)", f32, calib),
                              ("TinyEngine int8 (dynamo export + calibration)", dyn, calib)):
        pred = run_on_board(path, out / "x_test.npy", out, args.board, extra).argmax(1)
        acc[f"{name} on {args.board}"] = float(np.mean(pred == data.y_test))
        ref = ort[path.name] if not extra else ort[f32.name]
        agree[name] = float(np.mean(pred == ref))
    print(f"\nheld-out digits: {len(data.y_test)}")
    for k, v in acc.items():
        print(f"  {k:58s} {100 * v:5.1f}%")
    for k, v in agree.items():
        print(f"  top-1 agreement with onnxruntime, {k:45s} {100 * v:5.1f}%")
    print(f"models, projects and report.json files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
