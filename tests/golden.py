"""Test-side access to the golden reference (TensorFlow Lite Micro)."""
from tinyengine.golden import run_tflm, run_tflm_many  # noqa: F401
