"""The generated C of every shared model stays the same through refactors.

Golden hashes of every file of the generated project (model C, kernels, Makefile, linker
scripts, manifest; report.json aside) for each shared int8 model, with and without
``--patch auto`` and with ``--no-fuse``, for stm32f746, stm32f411 and host.  A change that
alters the generated C on purpose re-takes them in a commit of its own that says why:

    .venv/bin/python tests/test_codegen_golden.py --update
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import MODELS  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "golden" / "codegen_hashes.json"
SHARED = ["mlperf_tiny/ad01_int8.tflite", "mlperf_tiny/kws_ref_model.tflite",
          "mlperf_tiny/pretrainedResnet_quant.tflite", "mlperf_tiny/vww_96_int8.tflite",
          "mcunet/mcunet-vww1.tflite"]
BOARDS = ["stm32f746", "stm32f411", "host"]
VARIANTS = {"default": {}, "patch_auto": {"patch": "auto"}, "no_fuse": {"fuse": False}}


def cases():
    return [(m, b, v) for m in SHARED for b in BOARDS for v in VARIANTS]


def case_id(model: str, board: str, variant: str) -> str:
    return f"{Path(model).stem}-{board}-{variant}"


def project_hashes(model: str, board: str, variant: str, out: Path) -> dict:
    """sha256 of every file tinyengine writes for this case (report.json aside: it names
    the model's path)."""
    from tinyengine.compiler import CompileOptions, compile_model, write_project

    c = compile_model(MODELS / model, CompileOptions(board=board, **VARIANTS[variant]))
    write_project(c, out)
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != "report.json"}


@pytest.mark.parametrize("model,board,variant", cases(), ids=[case_id(*c) for c in cases()])
def test_generated_c_matches_golden(model, board, variant, tmp_path, models_dir):
    golden = json.loads(GOLDEN.read_text())
    got = project_hashes(model, board, variant, tmp_path)
    want = golden[case_id(model, board, variant)]
    changed = sorted(f for f in set(got) | set(want) if got.get(f) != want.get(f))
    assert not changed, f"generated files differ from the golden hashes: {changed}"


if __name__ == "__main__":
    import tempfile

    if "--update" not in sys.argv:
        sys.exit("usage: test_codegen_golden.py --update   (re-takes tests/golden/codegen_hashes.json)")
    table = {}
    for c in cases():
        with tempfile.TemporaryDirectory() as d:
            table[case_id(*c)] = project_hashes(*c, Path(d))
        print(case_id(*c), flush=True)
    GOLDEN.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
