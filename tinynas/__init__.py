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

What comes next (needs tinyengine's public API): a candidate as a tinyengine IR graph and its exact peak
SRAM / Flash / instructions from tinyengine's planner (with and without patches), the search-space
optimisation over (width, resolution) by the CDF rule, the evolutionary search over subnets, and the
`tinynas search` command (fine-tune, quantize, compile, run on the emulated board, report.json).

The PyTorch parts need the optional extra `nas` (`pip install -e '.[nas]'`: torch==2.13.0, tqdm);
`tinynas.space` needs nothing beyond the standard library.
"""
