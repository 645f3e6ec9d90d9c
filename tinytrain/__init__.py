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

What comes next: the walk over tinyengine's IR (public API only) that builds the training
graph (new head, loss, backward pruned to a sparse-update scheme, updates applied as soon as
their gradient exists), planning it in one arena, codegen of te_train_step / te_predict, the
`tinytrain` CLI (compile, fit --host, run) and the demo on mcunet-vww1.
"""
__version__ = "0.1.0"
