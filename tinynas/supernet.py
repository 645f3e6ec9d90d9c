"""The weight-sharing supernet of a `SearchSpace` (PyTorch), and its static subnets.

One set of weights holds every candidate of the space (once-for-all):

- elastic kernel: each depthwise conv keeps the largest kernel; a smaller kernel is its plain centre
  crop (once-for-all's learned kernel transform matrices are not used: a subnet's weights are a
  straight copy, and the crop is what the static subnet exports);
- elastic expand: a block with expand ratio e uses the first mid(e) channels of its expand conv, of its
  depthwise conv and the first mid(e) input channels of its projection;
- elastic depth: a stage of depth d runs its first d blocks;
- batch norm per active width: the first channels of the largest BN's weight, bias and running
  statistics.

`SuperNet.set_active(candidate)` selects a candidate for `forward`; `get_active_subnet(candidate)` hands
out a plain static `SubNet` (nn.Conv2d, nn.BatchNorm2d, nn.ReLU6, residual adds) with copied weights
that computes what the supernet computes with that candidate active.

Batch norm in training mode normalises with statistics of the whole global batch: when
`sync_batchnorm(group)` was called (distributed training), the per-channel sums are all-reduced over
the ranks (differentiably), so N processes with B/N images each compute what one process computes
with B images.

`python -m tinynas.supernet train ...` trains one (see tinynas.training).
"""
from __future__ import annotations

import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .space import Block, Candidate, SearchSpace


def batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, group=None) -> torch.Tensor:
    """`bn` on the first x.shape[1] channels of its weights and statistics.

    Training mode: normalises with the batch's mean and biased variance (two passes, each per-channel
    sum all-reduced over `group` when given) and updates the running statistics (unbiased variance) in place, like
    nn.BatchNorm2d with its momentum. Eval mode: the running statistics."""
    c = x.shape[1]
    weight, bias = bn.weight[:c], bn.bias[:c]
    if not bn.training:
        return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], weight, bias, False, 0.0, bn.eps)
    # every rank holds the same local batch size
    count = x.numel() // c * (dist.get_world_size(group) if group is not None else 1)
    mean = _sum_over(x.sum((0, 2, 3)), group) / count
    centred = x - mean[None, :, None, None]
    # two passes: E[x^2] - E[x]^2 cancels catastrophically in float32 where |mean| >> std (image borders)
    var = _sum_over((centred * centred).sum((0, 2, 3)), group) / count
    with torch.no_grad():
        m = bn.momentum
        bn.running_mean[:c].mul_(1 - m).add_(mean.detach(), alpha=m)
        bn.running_var[:c].mul_(1 - m).add_(var.detach() * (count / max(count - 1, 1)), alpha=m)
    scale = weight * torch.rsqrt(var + bn.eps)
    return centred * scale[None, :, None, None] + bias[None, :, None, None]


def _sum_over(t: torch.Tensor, group) -> torch.Tensor:
    """`t` summed over the ranks of `group` (differentiably), or `t` itself without a group."""
    return t if group is None else _AllReduceSum.apply(t, group)


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks; the gradient of every rank's copy is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, t, group):
        ctx.group = group
        t = t.clone()
        dist.all_reduce(t, group=group)
        return t

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class _Dynamic(nn.Module):
    """Shared by the supernet's modules: the process group of synchronised batch norm (None: local)."""
    bn_group = None

    def bn(self, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
        return batch_norm(bn, x, self.bn_group)


class DynamicMBBlock(_Dynamic):
    """Inverted-residual block with elastic kernel and expand ratio; weights sized for the largest."""

    def __init__(self, space: SearchSpace, cin: int, cout: int, stride: int):
        super().__init__()
        self.space, self.cin, self.cout, self.stride = space, cin, cout, stride
        self.max_k = max(space.kernel_sizes)
        max_mid = space.mid_channels(cin, max(space.expand_ratios))
        self.expand = nn.Conv2d(cin, max_mid, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(max_mid)
        self.depthwise = nn.Conv2d(max_mid, max_mid, self.max_k, stride, self.max_k // 2, groups=max_mid, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(max_mid)
        if space.se:
            max_se = space.se_channels(max_mid)
            self.se_reduce = nn.Conv2d(max_mid, max_se, 1)
            self.se_expand = nn.Conv2d(max_se, max_mid, 1)
        self.project = nn.Conv2d(max_mid, cout, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(cout)
        self.residual = stride == 1 and cin == cout
        self.active_k, self.active_mid = self.max_k, max_mid

    def set_active(self, k: int, e: int) -> None:
        self.active_k, self.active_mid = k, self.space.mid_channels(self.cin, e)

    def kernel(self) -> torch.Tensor:
        """The active depthwise kernel: the centre crop of the largest one."""
        lo = (self.max_k - self.active_k) // 2
        return self.depthwise.weight[:self.active_mid, :, lo:lo + self.active_k, lo:lo + self.active_k]

    def se_weights(self):
        mid = self.active_mid
        se = self.space.se_channels(mid)
        return (self.se_reduce.weight[:se, :mid], self.se_reduce.bias[:se],
                self.se_expand.weight[:mid, :se], self.se_expand.bias[:mid])

    def forward(self, x):
        mid, k = self.active_mid, self.active_k
        h = F.relu6(self.bn(self.expand_bn, F.conv2d(x, self.expand.weight[:mid])))
        h = F.relu6(self.bn(self.depthwise_bn, F.conv2d(h, self.kernel(), None, self.stride, k // 2, 1, mid)))
        if self.space.se:
            w1, b1, w2, b2 = self.se_weights()
            s = F.relu(F.conv2d(h.mean((2, 3), keepdim=True), w1, b1))
            h = h * F.hardsigmoid(F.conv2d(s, w2, b2))
        h = self.bn(self.project_bn, F.conv2d(h, self.project.weight[:, :mid]))
        return h + x if self.residual else h


class SuperNet(_Dynamic):
    """Every candidate of `space` in one set of weights."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        stem, first = space.stem_channels, space.first_channels
        self.stem = nn.Conv2d(space.in_channels, stem, 3, 2, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(stem)
        self.first_dw = nn.Conv2d(stem, stem, 3, 1, 1, groups=stem, bias=False)
        self.first_dw_bn = nn.BatchNorm2d(stem)
        self.first_project = nn.Conv2d(stem, first, 1, bias=False)
        self.first_project_bn = nn.BatchNorm2d(first)
        self.first_residual = stem == first
        self.stages = nn.ModuleList()
        cin = first
        for s, cout in enumerate(space.stage_channels):
            self.stages.append(nn.ModuleList(
                DynamicMBBlock(space, cin if i == 0 else cout, cout, space.stage_strides[s] if i == 0 else 1)
                for i in range(max(space.stage_depths[s]))))
            cin = cout
        self.classifier = nn.Linear(cin, space.num_classes)
        self.active = space.largest()
        self.set_active(self.active)

    def set_active(self, c: Candidate) -> None:
        self.space.validate(c)
        for stage, ks, es in zip(self.stages, c.ks, c.e):
            for block, k, e in zip(stage, ks, es):
                block.set_active(k, e)
        self.active = c

    def sync_batchnorm(self, group) -> None:
        """Batch norm statistics over `group`'s whole batch (None: each process's own)."""
        for m in self.modules():
            if isinstance(m, _Dynamic):
                m.bn_group = group

    def forward(self, x):
        h = F.relu6(self.bn(self.stem_bn, self.stem(x)))
        t = F.relu6(self.bn(self.first_dw_bn, self.first_dw(h)))
        t = self.bn(self.first_project_bn, self.first_project(t))
        h = t + h if self.first_residual else t
        for stage, d in zip(self.stages, self.active.depths):
            for block in stage[:d]:
                h = block(h)
        return self.classifier(h.mean((2, 3)))

    @torch.no_grad()
    def get_active_subnet(self, c: Candidate | None = None) -> "SubNet":
        """A static network with copies of `c`'s weights (default: the active candidate)."""
        c = self.active if c is None else self.space.validate(c)
        net = SubNet(self.space, c)
        _copy(net.stem[0], self.stem.weight)
        _copy_bn(net.stem[1], self.stem_bn)
        blocks = iter(net.blocks)
        first = next(blocks)
        _copy(first.depthwise[0], self.first_dw.weight)
        _copy_bn(first.depthwise[1], self.first_dw_bn)
        _copy(first.project[0], self.first_project.weight)
        _copy_bn(first.project[1], self.first_project_bn)
        for stage, ks, es in zip(self.stages, c.ks, c.e):
            for src, k, e in zip(stage, ks, es):
                dst = next(blocks)
                mid = self.space.mid_channels(src.cin, e)
                src.set_active(k, e)
                _copy(dst.expand[0], src.expand.weight[:mid])
                _copy_bn(dst.expand[1], src.expand_bn)
                _copy(dst.depthwise[0], src.kernel())
                _copy_bn(dst.depthwise[1], src.depthwise_bn)
                if self.space.se:
                    w1, b1, w2, b2 = src.se_weights()
                    _copy(dst.se[1], w1, b1)
                    _copy(dst.se[3], w2, b2)
                _copy(dst.project[0], src.project.weight[:, :mid])
                _copy_bn(dst.project[1], src.project_bn)
        _copy(net.classifier, self.classifier.weight, self.classifier.bias)
        self.set_active(self.active)
        return net


def _copy(dst: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    dst.weight.copy_(weight)
    if bias is not None:
        dst.bias.copy_(bias)


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d) -> None:
    c = dst.num_features
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[:c])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
    dst.eps, dst.momentum = src.eps, src.momentum


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU6()) if relu else nn.Sequential(*layers)


class StaticMBBlock(nn.Module):
    """One block of a candidate (the MB1 block has no expand conv)."""

    def __init__(self, b: Block):
        super().__init__()
        self.expand = _conv_bn(b.cin, b.mid, 1) if b.stage >= 0 else None
        self.depthwise = _conv_bn(b.mid, b.mid, b.k, b.stride, b.mid)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(b.mid, b.se_mid, 1), nn.ReLU(),
                                nn.Conv2d(b.se_mid, b.mid, 1), nn.Hardsigmoid()) if b.se_mid else None
        self.project = _conv_bn(b.mid, b.cout, 1, relu=False)
        self.residual = b.residual

    def forward(self, x):
        h = self.expand(x) if self.expand is not None else x
        h = self.depthwise(h)
        if self.se is not None:
            h = h * self.se(h)
        h = self.project(h)
        return h + x if self.residual else h


class SubNet(nn.Module):
    """A candidate as a plain static network (weights from `SuperNet.get_active_subnet`)."""

    def __init__(self, space: SearchSpace, c: Candidate):
        super().__init__()
        self.space, self.candidate = space, c
        self.stem = _conv_bn(space.in_channels, space.stem_channels, 3, 2)
        self.blocks = nn.Sequential(*(StaticMBBlock(b) for b in space.blocks(c)))
        self.classifier = nn.Linear(space.stage_channels[-1], space.num_classes)

    def forward(self, x):
        return self.classifier(self.blocks(self.stem(x)).mean((2, 3)))

    @torch.no_grad()
    def settle_constant_channels(self, x: torch.Tensor, batch_size: int = 256) -> int:
        """Give every batch-norm channel whose input is the same for all images `x` (N x C x r x r) weight 0
        and, as bias, the output it had (the same outputs on `x`); the number of such channels. Eval mode.

        A depthwise channel fed by a ReLU6 channel that never fires computes a constant: its running
        variance decays to about 0, and the folded weights (the ONNX export folds batch norm into the
        convolution) come out about gamma / sqrt(eps), some 300 times too large. Their per-channel
        requantization multiplier (above 0.25) then sends the whole layer from tinyengine's DSP
        depthwise kernel to the portable one, eight times slower, where tinynas.cost predicted the DSP
        kernel (MobileNetV2 w0.25 r32 on the digits: +32% instructions). Settled, the channel's folded
        weights are 0: a constant channel for tinyengine too."""
        self.eval()
        norms = [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        lo = {m: None for m in norms}
        hi = dict(lo)

        def record(m, args):
            v = args[0].transpose(0, 1).flatten(1)
            a, b = v.min(1).values, v.max(1).values
            lo[m] = a if lo[m] is None else torch.minimum(lo[m], a)
            hi[m] = b if hi[m] is None else torch.maximum(hi[m], b)

        hooks = [m.register_forward_pre_hook(record) for m in norms]
        try:
            for i in range(0, len(x), batch_size):
                self(x[i:i + batch_size])
        finally:
            for h in hooks:
                h.remove()
        settled = 0
        for m in norms:
            if lo[m] is None:
                continue
            const = lo[m] == hi[m]
            out = (lo[m] - m.running_mean) * torch.rsqrt(m.running_var + m.eps) * m.weight + m.bias
            m.bias[const] = out[const]
            m.weight[const] = 0.0
            settled += int(const.sum())
        return settled


if __name__ == "__main__":
    from .training import main
    sys.exit(main())
