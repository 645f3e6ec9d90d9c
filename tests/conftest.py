import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = Path(os.environ.get("TINYENGINE_MODELS", ROOT.parent / "shared" / "models"))


def have_arm_toolchain() -> bool:
    return bool(shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"))


@pytest.fixture
def models_dir() -> Path:
    if not MODELS.is_dir():
        pytest.skip(f"shared models not found at {MODELS} (set TINYENGINE_MODELS)")
    return MODELS


def pytest_collection_modifyitems(config, items):
    if have_arm_toolchain():
        return
    skip = pytest.mark.skip(reason="arm-none-eabi-gcc / qemu-system-arm not installed (make test installs them)")
    if os.environ.get("CI"):
        return  # CI installs the toolchain (make test): a missing one must fail, not skip
    for item in items:
        if "qemu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def torch_one_thread():
    """PyTorch on one thread: the CI machine's 2 cores are shared, and a thread pool only adds contention
    to the small networks of the tinynas tests (several times slower with 2 threads on a busy machine)."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
