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
