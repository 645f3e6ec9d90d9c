"""TinyTrain: on-device transfer learning for int8 models, compiled ahead of time (issue 13).

What exists (the foundation, independent of tinyengine's IR):
  firmware/kernels/te_*_grad_*_f32, te_clamp_grad_mask_s8, te_softmax_cross_entropy_grad_f32,
      te_exp_f32 / te_log_f32, te_sgd_update_s8 / _s32
                      the backward and update kernels: float32 gradients, int8 activations
                      and weights read as stored, quantization-aware scaling (QAS), no libm,
                      the same bits on the host and on a Cortex-M (-ffp-contract=off)
  tinytrain.grad_rules  one gradient rule per forward op (CONV_2D, DEPTHWISE_CONV_2D,
                      FULLY_CONNECTED, ADD, AVERAGE_POOL_2D, MEAN, RESHAPE, PAD, RELU/RELU6 and
                      every op's clamp as a 1-bit mask): (op, attrs, shapes, targets) -> kernel
                      steps; fewer targets give fewer steps (pruning); SGD update steps
  tinytrain.reference   the NumPy definition of every kernel (and run_steps to execute rules)
  tinytrain.torch_sim   the same math in PyTorch on dequantized tensors, autograd for the
                      backward: the golden of the kernels (optional extra `train`)
Tests: tests/test_train_kernels.py (C == NumPy == torch.autograd within stated float32
bounds; host == QEMU Cortex-M7 bit for bit).

Built on tinyengine's IR (its public API only):
  tinytrain.scheme    which parameters train: biases of the last K layers, a fraction of a
                      layer's output channels by weight magnitude, or everything (JSON / flags)
  tinytrain.graph     the training graph: the int8 forward as tinyengine runs it, a new head
                      for N classes, softmax cross-entropy, the backward walked from the loss
                      and pruned to the scheme, each SGD update right after its gradient
  tinytrain.ops       the backward's OpDefs (te.register_op), one per training kernel
  tinytrain.memory    peak SRAM: the arena (te.plan_memory) + trained parameters + momentum
                      state + stack
  tinytrain.firmware  the training firmware: compile_training (a C project with te_train_step
                      and te_predict, codegen_templates/train/, firmware/train_main.c) and
                      run_training (build, train on QEMU or the host, read params.bin);
                      bias-only layers keep the board's DSP kernels (graph.trained_params,
                      te_fold_bias_s32); profile=True: per-operator counts (profile_rows)
  tinytrain.data      training data: image folders, .npz, the digits demo, as the int8 input
  tinytrain.fit       host training in PyTorch (`fit --host`): simulated int8 (the device's
                      arithmetic) or float32, the frozen prefix's outputs cached
  tinytrain.device    `run`: compile_training + run_training and the report's figures
  tinytrain.report    the accuracy curve printed, report.json, accuracy.png
  tinytrain.cli       `tinytrain plan / compile / fit / run` (one-line errors, exit 2)
Tests: tests/test_train_graph.py (gradients == torch.autograd of torch_sim.graph_gradients,
pruning, schemes, mcunet-vww1's plan); tests/test_train_onnx.py (the same from ONNX files:
QDQ and float + calibration, Gemm / 1x1 conv / pooled-map heads; forward bit-exact with the
inference compile); tests/test_train_errors.py (every bad input: one line, exit 2; the
default scheme of the shared models on stm32f411); tests/test_train_firmware.py (100 steps:
host == QEMU Cortex-M7 bit for bit, == the NumPy reference; pruned kernels absent from the
C; bias-only layers on the DSP kernels: QEMU M7 and M4 == host == reference, the kernels
named in the C, a bias past their range stops the firmware; mcunet-vww1 on QEMU == host);
tests/test_train_data.py (data and its errors); tests/test_train_fit.py (the int8 simulation
== the NumPy reference of the same steps); tests/test_train_run.py (`run` on the host build ==
`fit --int8` epoch by epoch, QEMU == host build, bench/train.py's fast path).
bench/train.py: the demo (`make train-demo`).
"""
__version__ = "0.1.0"
