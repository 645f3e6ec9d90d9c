"""The search space of MCUNet / MCUNetV2 and its candidates.

A network of the space, in data-flow order:

    stem       3x3 conv, stride 2, `stem_width` x w channels, BN, ReLU6
    first      MB1 k3: 3x3 depthwise conv (BN, ReLU6), 1x1 projection to `first_block_width` x w (BN);
               a residual when its input and output widths are equal
    stages     per stage s: depth d_s (a choice of `stage_depths[s]`) inverted-residual blocks of
               `stage_widths[s]` x w channels, the first with stride `stage_strides[s]`; block b has
               a kernel k (`kernel_sizes`) and an expand ratio e (`expand_ratios`):
               1x1 expand to mid = make_divisible(in x e) (BN, ReLU6), k x k depthwise (BN, ReLU6),
               [squeeze-excite when `se`], 1x1 projection (BN); a residual when stride 1 and in == out
    head       global average pool, fully connected to `num_classes`

w is `width_mult` (channel counts rounded by `make_divisible`, as ProxylessNAS / once-for-all do).
The defaults are ProxylessNAS's widths, strides and depths (five elastic stages of up to 4 blocks,
a last stage of one block), as in MCUNet.

A `Candidate` is one network of a space: its input resolution and, per stage, the kernel and the
expand ratio of each active block (the depth is the length of the stage's tuples). It is frozen,
hashable and canonical: two candidates are equal exactly when they describe the same network. JSON:
`{"r": 128, "ks": [[3, 5], ...], "e": [[4, 6], ...]}`.

MACs and parameters are counted analytically from `SearchSpace.layers` (convolutions and the fully
connected layer; element-wise ops, pooling and BN are not MACs; parameters are the PyTorch subnet's:
conv weights, BN weight and bias, SE conv biases, FC weight and bias).

SE: `se=True` puts a squeeze-excite (global pool, 1x1 conv to mid/4 with ReLU, 1x1 conv back to mid
with hard sigmoid, channel-wise multiply) in every elastic block. tinyengine has no
multiply-by-broadcast / sigmoid path yet, so SE is off by default.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass

from .errors import CandidateError, TinyNasError


def make_divisible(value: float, divisor: int = 8) -> int:
    """`value` rounded to the nearest multiple of `divisor` (at least `divisor`), never more than 10% below."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class Candidate:
    """One network of a search space: resolution `r`, per stage the kernels `ks` and expand ratios `e`."""
    r: int
    ks: tuple[tuple[int, ...], ...]
    e: tuple[tuple[int, ...], ...]

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(k) for k in self.ks)

    def to_dict(self) -> dict:
        return {"r": self.r, "ks": [list(k) for k in self.ks], "e": [list(e) for e in self.e]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "Candidate":
        """A candidate from its JSON form; its shape is checked here, its values by `SearchSpace.validate`."""
        if not isinstance(d, dict):
            raise CandidateError(f"candidate: expected an object with keys r, ks, e, got {type(d).__name__}")
        unknown = sorted(set(d) - {"r", "ks", "e"})
        missing = sorted({"r", "ks", "e"} - set(d))
        if unknown or missing:
            raise CandidateError("candidate: keys must be r, ks, e"
                                 + (f"; unknown {', '.join(unknown)}" if unknown else "")
                                 + (f"; missing {', '.join(missing)}" if missing else ""))
        if not _is_int(d["r"]):
            raise CandidateError(f"candidate: r must be an integer resolution, got {d['r']!r}")

        def nested(name):
            v = d[name]
            if not isinstance(v, (list, tuple)) or not all(
                    isinstance(s, (list, tuple)) and all(_is_int(x) for x in s) for s in v):
                raise CandidateError(f"candidate: {name} must be a list of per-stage lists of integers, got {v!r}")
            return tuple(tuple(int(x) for x in s) for s in v)

        return cls(int(d["r"]), nested("ks"), nested("e"))

    @classmethod
    def from_json(cls, text: str) -> "Candidate":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CandidateError(f"candidate: not JSON ({exc.msg} at character {exc.pos})") from None
        return cls.from_dict(d)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class Layer:
    """One convolution or fully connected layer of a candidate, for counting and for building networks.

    kind: 'conv' (dense k x k), 'dw' (depthwise k x k), 'pw' (1x1), 'se_reduce' / 'se_expand'
    (1x1 convs with bias on the pooled 1x1 map), 'fc'. `in_hw` / `out_hw` are square sizes.
    `bn`: followed by batch norm (its weight and bias count as parameters)."""
    kind: str
    cin: int
    cout: int
    k: int
    stride: int
    in_hw: int
    out_hw: int
    bn: bool
    bias: bool

    @property
    def macs(self) -> int:
        per_out = self.k * self.k * (1 if self.kind == "dw" else self.cin)
        return self.out_hw * self.out_hw * self.cout * per_out

    @property
    def params(self) -> int:
        weights = self.k * self.k * self.cout * (1 if self.kind == "dw" else self.cin)
        return weights + (self.cout if self.bias else 0) + (2 * self.cout if self.bn else 0)


@dataclass(frozen=True)
class Block:
    """One inverted-residual block of a candidate with its channel counts (mid == cin for the MB1 block)."""
    stage: int          # -1 for the first (MB1) block
    index: int          # position within its stage
    cin: int
    mid: int
    cout: int
    k: int
    e: int              # 1 for the MB1 block
    stride: int
    in_hw: int
    se_mid: int         # 0 without SE
    residual: bool

    @property
    def out_hw(self) -> int:
        return conv_out(self.in_hw, self.stride)


def conv_out(hw: int, stride: int) -> int:
    """Output size of a 'same'-padded (k // 2) odd-kernel convolution."""
    return (hw - 1) // stride + 1


@dataclass(frozen=True)
class SearchSpace:
    """The space: widths, strides and choices. Validated on construction; JSON through to_dict/from_dict."""
    width_mult: float = 1.0
    resolutions: tuple[int, ...] = (96, 112, 128, 144, 160)
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    expand_ratios: tuple[int, ...] = (3, 4, 6)
    stem_width: int = 32
    first_block_width: int = 16
    stage_widths: tuple[int, ...] = (24, 40, 80, 96, 192, 320)
    stage_strides: tuple[int, ...] = (2, 2, 2, 1, 2, 1)
    stage_depths: tuple[tuple[int, ...], ...] = ((2, 3, 4),) * 5 + ((1,),)
    in_channels: int = 3
    num_classes: int = 10
    se: bool = False
    divisor: int = 8

    def __post_init__(self):
        def ints(name, values, minimum):
            if not isinstance(values, tuple) or not values or not all(_is_int(v) and v >= minimum for v in values):
                raise TinyNasError(f"search space: {name} must be a non-empty list of integers >= {minimum}, "
                                   f"got {values!r}")
            if list(values) != sorted(set(values)) and name in ("resolutions", "kernel_sizes", "expand_ratios"):
                raise TinyNasError(f"search space: {name} must be increasing without repeats, got {list(values)}")

        if not isinstance(self.width_mult, (int, float)) or isinstance(self.width_mult, bool) or self.width_mult <= 0:
            raise TinyNasError(f"search space: width_mult must be a positive number, got {self.width_mult!r}")
        ints("resolutions", self.resolutions, 8)
        ints("kernel_sizes", self.kernel_sizes, 1)
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise TinyNasError(f"search space: kernel_sizes must be odd, got {list(self.kernel_sizes)}")
        ints("expand_ratios", self.expand_ratios, 2)
        ints("stage_widths", self.stage_widths, 1)
        ints("stage_strides", self.stage_strides, 1)
        if not all(s in (1, 2) for s in self.stage_strides):
            raise TinyNasError(f"search space: stage_strides must be 1 or 2, got {list(self.stage_strides)}")
        if not isinstance(self.stage_depths, tuple) or len(self.stage_depths) != len(self.stage_widths) \
                or len(self.stage_strides) != len(self.stage_widths):
            raise TinyNasError("search space: stage_widths, stage_strides and stage_depths need one entry per "
                               f"stage, got {len(self.stage_widths)}, {len(self.stage_strides)}, "
                               f"{len(self.stage_depths) if isinstance(self.stage_depths, tuple) else '?'}")
        for s, depths in enumerate(self.stage_depths):
            ints(f"stage_depths[{s}]", depths, 1)
        for name in ("stem_width", "first_block_width", "in_channels", "num_classes", "divisor"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise TinyNasError(f"search space: {name} must be a positive integer, got {v!r}")
        if not isinstance(self.se, bool):
            raise TinyNasError(f"search space: se must be true or false, got {self.se!r}")

    # ---- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: ([list(x) for x in v] if k == "stage_depths" else list(v) if isinstance(v, tuple) else v)
                for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        if not isinstance(d, dict):
            raise TinyNasError(f"search space: expected an object, got {type(d).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TinyNasError(f"search space: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")

        def tup(v):
            return tuple(tup(x) for x in v) if isinstance(v, list) else v
        return cls(**{k: tup(v) for k, v in d.items()})

    # ---- widths ----------------------------------------------------------------------------------
    def width(self, base: int) -> int:
        return make_divisible(base * self.width_mult, self.divisor)

    def mid_channels(self, cin: int, e: int) -> int:
        return make_divisible(cin * e, self.divisor)

    def se_channels(self, mid: int) -> int:
        return make_divisible(mid // 4, self.divisor)

    @property
    def stem_channels(self) -> int:
        return self.width(self.stem_width)

    @property
    def first_channels(self) -> int:
        return self.width(self.first_block_width)

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return tuple(self.width(c) for c in self.stage_widths)

    # ---- candidates ------------------------------------------------------------------------------
    def validate(self, c: Candidate) -> Candidate:
        """`c` itself if it belongs to this space, else CandidateError naming the first bad value."""
        if not isinstance(c, Candidate):
            raise CandidateError(f"candidate: expected a Candidate, got {type(c).__name__}")
        if c.r not in self.resolutions:
            raise CandidateError(f"candidate: resolution {c.r} not in {list(self.resolutions)}")
        n = len(self.stage_widths)
        if len(c.ks) != n or len(c.e) != n:
            raise CandidateError(f"candidate: ks and e need {n} stages, got {len(c.ks)} and {len(c.e)}")
        for s in range(n):
            if len(c.ks[s]) != len(c.e[s]):
                raise CandidateError(f"candidate: stage {s} has {len(c.ks[s])} kernels but {len(c.e[s])} expand ratios")
            if len(c.ks[s]) not in self.stage_depths[s]:
                raise CandidateError(f"candidate: stage {s} depth {len(c.ks[s])} not in {list(self.stage_depths[s])}")
            for b, (k, e) in enumerate(zip(c.ks[s], c.e[s])):
                if k not in self.kernel_sizes:
                    raise CandidateError(f"candidate: stage {s} block {b}: kernel {k} not in {list(self.kernel_sizes)}")
                if e not in self.expand_ratios:
                    raise CandidateError(f"candidate: stage {s} block {b}: expand ratio {e} not in "
                                         f"{list(self.expand_ratios)}")
        return c

    def largest(self) -> Candidate:
        k, e = max(self.kernel_sizes), max(self.expand_ratios)
        return Candidate(max(self.resolutions), tuple((k,) * max(d) for d in self.stage_depths),
                         tuple((e,) * max(d) for d in self.stage_depths))

    def smallest(self) -> Candidate:
        k, e = min(self.kernel_sizes), min(self.expand_ratios)
        return Candidate(min(self.resolutions), tuple((k,) * min(d) for d in self.stage_depths),
                         tuple((e,) * min(d) for d in self.stage_depths))

    def sample(self, rng: random.Random) -> Candidate:
        """A uniformly random candidate (resolution, depths, then kernel and expand ratio per block)."""
        r = rng.choice(self.resolutions)
        depths = [rng.choice(d) for d in self.stage_depths]
        ks = tuple(tuple(rng.choice(self.kernel_sizes) for _ in range(d)) for d in depths)
        es = tuple(tuple(rng.choice(self.expand_ratios) for _ in range(d)) for d in depths)
        return Candidate(r, ks, es)

    def mutate(self, c: Candidate, rng: random.Random, prob: float = 0.1) -> Candidate:
        """Each choice re-drawn with probability `prob` (once-for-all); a deeper stage gets random new blocks."""
        self.validate(c)
        r = rng.choice(self.resolutions) if rng.random() < prob else c.r
        ks, es = [], []
        for s, choices in enumerate(self.stage_depths):
            k, e = list(c.ks[s]), list(c.e[s])
            for b in range(len(k)):
                if rng.random() < prob:
                    k[b] = rng.choice(self.kernel_sizes)
                if rng.random() < prob:
                    e[b] = rng.choice(self.expand_ratios)
            if rng.random() < prob:
                d = rng.choice(choices)
                k, e = k[:d], e[:d]
                while len(k) < d:
                    k.append(rng.choice(self.kernel_sizes))
                    e.append(rng.choice(self.expand_ratios))
            ks.append(tuple(k))
            es.append(tuple(e))
        return Candidate(r, tuple(ks), tuple(es))

    def crossover(self, a: Candidate, b: Candidate, rng: random.Random) -> Candidate:
        """Each choice from one parent at random; a stage takes one parent's depth, and a block that only
        the deeper parent has comes from that parent."""
        self.validate(a)
        self.validate(b)
        r = rng.choice((a.r, b.r))
        ks, es = [], []
        for s in range(len(self.stage_widths)):
            d = rng.choice((len(a.ks[s]), len(b.ks[s])))
            k, e = [], []
            for i in range(d):
                parents = [p for p in (a, b) if i < len(p.ks[s])]
                k.append(rng.choice(parents).ks[s][i])
                e.append(rng.choice(parents).e[s][i])
            ks.append(tuple(k))
            es.append(tuple(e))
        return Candidate(r, tuple(ks), tuple(es))

    # ---- structure and counts --------------------------------------------------------------------
    def blocks(self, c: Candidate) -> list[Block]:
        """The candidate's MB1 block and inverted-residual blocks, with channels and input sizes."""
        self.validate(c)
        hw = conv_out(c.r, 2)
        stem, first = self.stem_channels, self.first_channels
        out = [Block(-1, 0, stem, stem, first, 3, 1, 1, hw, 0, stem == first)]
        cin = first
        for s, cout in enumerate(self.stage_channels):
            for i, (k, e) in enumerate(zip(c.ks[s], c.e[s])):
                stride = self.stage_strides[s] if i == 0 else 1
                mid = self.mid_channels(cin, e)
                out.append(Block(s, i, cin, mid, cout, k, e, stride, hw,
                                 self.se_channels(mid) if self.se else 0, stride == 1 and cin == cout))
                hw = conv_out(hw, stride)
                cin = cout
        return out

    def layers(self, c: Candidate) -> list[Layer]:
        """Every convolution and the classifier of `c`, in order."""
        out = [Layer("conv", self.in_channels, self.stem_channels, 3, 2, c.r, conv_out(c.r, 2), True, False)]
        for b in self.blocks(c):
            if b.stage >= 0:
                out.append(Layer("pw", b.cin, b.mid, 1, 1, b.in_hw, b.in_hw, True, False))
            out.append(Layer("dw", b.mid, b.mid, b.k, b.stride, b.in_hw, b.out_hw, True, False))
            if b.se_mid:
                out.append(Layer("se_reduce", b.mid, b.se_mid, 1, 1, 1, 1, False, True))
                out.append(Layer("se_expand", b.se_mid, b.mid, 1, 1, 1, 1, False, True))
            out.append(Layer("pw", b.mid, b.cout, 1, 1, b.out_hw, b.out_hw, True, False))
        last = self.stage_channels[-1]
        out.append(Layer("fc", last, self.num_classes, 1, 1, 1, 1, False, True))
        return out

    def macs(self, c: Candidate) -> int:
        return sum(layer.macs for layer in self.layers(c))

    def params(self, c: Candidate) -> int:
        return sum(layer.params for layer in self.layers(c))

    def describe(self, c: Candidate) -> dict:
        """The candidate with its space and counts, as one JSON-able dict."""
        return {"space": self.to_dict(), "candidate": c.to_dict(), "macs": self.macs(c), "params": self.params(c)}

