"""TinyNAS: search networks that fit a microcontroller, with memory and speed from tinyengine itself (issue 14).

What exists:
- `tinynas.space`: the MCUNet / MCUNetV2 search space (MobileNetV2 inverted-residual stages on ProxylessNAS
  widths x a width multiplier, first block MB1 k3, per block kernel {3,5,7} and expand {3,4,6}, per stage
  depth, input resolution, optional SE, off by default). A `Candidate` is a frozen, hashable, canonical
  JSON-able description; seeded sampling, mutation and crossover (once-for-all style); validation with
  one-line errors; MACs and parameters counted analytically.
- `tinynas.supernet`: the weight-sharing supernet in PyTorch (elastic kernel by centre crop, elastic expand
  and depth by first channels / blocks, batch norm per active width, synchronised over ranks when
  distributed) and `get_active_subnet` handing out a static nn.Module with copied weights.
- `tinynas.training` / `python -m tinynas.supernet train`: sandwich-rule training with in-place
  distillation on an image folder or the digits demo, BN recalibration before evaluation, exact resume
  from checkpoints, unchanged under `torchrun --nproc_per_node N` (DistributedDataParallel, gloo / nccl).
- `tinynas.data`: image folders (DIR/<class>/<image>) and scikit-learn's digits, with clear errors.

- `tinynas.lower`: a candidate as an int8 tinyengine IR graph (per-channel weights, random seeded or
  given), no file in between; it runs bit-exact with TFLM (tests/test_nas_lower.py).
- `tinynas.cost`: `CostModel.get_efficiency(candidate)`: peak SRAM exactly as tinyengine's report states
  it (te.plan_memory + the board's stack; with patches where layer by layer misses the budget), Flash
  (constants from the planned nodes + a code model) and instructions (per-kernel fit on QEMU profiles),
  both fitted by `python -m tinynas.fit_cost` into cost_fit.json; cached, evaluated over processes.
- `tinynas.search`: evolutionary search over two interfaces (efficiency, batched accuracy), SRAM /
  Flash / instruction limits, one-line NoFitError with the smallest network's needs.
- `tinynas.accuracy`: accuracy for the search: `SupernetAccuracy` (a subnet's accuracy on the held-out
  validation split after BN recalibration, cached) and `AccuracyPredictor` (MLP or ridge on a candidate
  encoding, fitted on such measurements, with its held-out rank correlation and RMSE); measured for
  small searches, the predictor for large ones (`choose_accuracy`).
- `tinynas.space_opt`: MCUNet's stage 1 (CDF rule over a width x resolution grid, table and PNG).
- `tinynas.cli` (`tinynas search`): stage 1, a supernet trained on `--data DIR` / `--digits` (or
  `--supernet CKPT`), then the search for the best accuracy within SRAM, Flash and `--latency-ms`
  (instructions / the board's `clock_hz`, about one instruction per cycle assumed); `--accuracy macs`
  keeps the fast MACs proxy; then the pipeline on the winner.
- `tinynas.pipeline`: the winner fine-tuned from the supernet's weights, exported to ONNX, quantized through
  tinyengine's ONNX + calibration path, compiled, run on the board (QEMU) on the test split (held out from
  training and search); report.json with predicted vs measured peak SRAM (equal), Flash, instructions and the int8 accuracy on the device.
- `make nas-demo` (examples/nas_demo.py): digits at 32x32, one supernet, two budgets on two boards;
  `bench/nas.py`: the searched network vs a hand-scaled MobileNetV2 over 5 folds in BENCHMARKS.md.

What could come next: an accuracy predictor that ranks well on a short-trained supernet, and a Flash model
that knows which kernels a very small network links.

The PyTorch parts need the optional extra `nas` (`pip install -e '.[nas]'`: torch==2.13.0, tqdm);
`tinynas.space` needs nothing beyond the standard library.
"""
