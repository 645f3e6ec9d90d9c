"""Every requantization multiplier against the pinned TensorFlow Lite Micro, at the rounding
boundary.

A multiplier one ulp off changes an output only for the rare accumulators on a rounding
boundary, so random inputs almost never show it (ad01's last FULLY_CONNECTED, whose scale
product TinyEngine took in float32, needed 300 inputs).  Here a seeded search picks, for each
op that requantizes, scales for which the plausible ways of forming its real multiplier (in
double, or with a float32 product or quotient) give different QuantizeMultiplier
results, and inputs on which those give different outputs.  One model holds a probe
per op, each with its own inputs and output.  On those boundary inputs TensorFlow Lite Micro must
agree with exactly one candidate formula, TinyEngine's multiplier must be that formula's, and
the compiled model (host build; Cortex-M7 and M4 builds under QEMU, whose DSP kernels keep
multipliers in tables of their own) must equal TensorFlow Lite Micro on them and on random
inputs.  A second model does the same for the per-channel weighted ops with negative weight
scales on half of the channels (a negative multiplier).

LOGISTIC and LOG_SOFTMAX have no such ambiguity (a scale times a power of two is exact in float
and double); they are checked on all 256 input codes and on random rows.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.golden import run_tflm_many
from tests.test_models import run_cli_on_records
from tests.tflite_builder import ModelBuilder
from tinyengine.compiler import run_passes
from tinyengine.frontends.tflite import load
from tinyengine.golden import GoldenError
from tinyengine.ops import UnsupportedError
from tinyengine.ops import gemmlowp as gl
from tinyengine.ops.conv import per_channel_multipliers
from tinyengine.ops.fully_connected import per_tensor_multiplier
from tinyengine.quant import multiply_by_quantized_multiplier as mbqm
from tinyengine.quant import quantize_multiplier

SEED = 12
F32 = np.float32
RANGE = {"int8": (-128, 127), "int16": (-32768, 32767)}


def d(x) -> float:
    """A scale as the model stores it (float32), widened to double."""
    return float(F32(x))


# -- candidate formulas: name -> scales -> (multiplier, shift) --------------------------------
def _qm(f):
    return lambda *s: quantize_multiplier(f(*s))


PRODUCT = {     # a * b / c: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED (in, w, out), MUL
    "double": _qm(lambda a, b, c: d(a) * d(b) / d(c)),
    "float32 product": _qm(lambda a, b, c: float(F32(a) * F32(b)) / d(c)),
}
# (Reassociating in double, a * (b / c), moves the real by an ulp of a double: 22 bits below
# the multiplier's 31, it practically never changes the multiplier, so it is no candidate.)
RATIO = {       # a / c: QUANTIZE requantization, MEAN
    "double": _qm(lambda a, c: d(a) / d(c)),
    "float32 quotient": _qm(lambda a, c: float(F32(a) / F32(c))),
}
SOFTMAX_BETA = {  # PreprocessSoftmaxScaling: beta * input_scale * 2^26
    "double": _qm(lambda beta, s: d(beta) * d(s) * float(1 << 26)),
    "float32 product": _qm(lambda beta, s: float(F32(beta) * F32(s)) * float(1 << 26)),
}


def _add_formula(t):
    """CalculateOpDataAdd's three multipliers with every step in type t."""
    def params(s1, s2, so):
        s1, s2, so = t(d(s1)), t(d(s2)), t(d(so))
        twice = t(2.0) * max(s1, s2)
        return tuple(quantize_multiplier(float(r)) for r in
                     (s1 / twice, s2 / twice, twice / (t(1 << 20) * so)))
    return params


ADD = {"double": _add_formula(float), "float32": _add_formula(F32)}


# -- the search ------------------------------------------------------------------------------
def log_uniform(rng, lo, hi) -> float:
    return float(F32(np.exp(rng.uniform(np.log(lo), np.log(hi)))))


def requant(acc, pair, zp, dtype="int8"):
    lo, hi = RANGE[dtype]
    return np.clip(np.asarray(mbqm(np.asarray(acc, np.int64), pair[0], pair[1])) + zp, lo, hi)


def discriminating(rng, formulas: dict, scales: tuple, candidates, outputs):
    """(params, picks): each formula's parameters for ``scales``, and for each pair of formulas
    up to 3 of ``candidates`` (inputs; or a function of the scales giving them) on which
    ``outputs(params, candidates)`` differ.  None unless every pair of formulas gives different
    parameters and differs somewhere."""
    params = {k: f(*scales) for k, f in formulas.items()}
    if len(set(params.values())) < len(params):
        return None
    if callable(candidates):
        candidates = candidates(scales)
    out = {k: outputs(p, candidates) for k, p in params.items()}
    picks = []
    for u, v in itertools.combinations(out, 2):
        rows = np.flatnonzero(np.any((out[u] != out[v]).reshape(len(candidates), -1), axis=1))
        if rows.size == 0:
            return None
        picks.append(candidates[rng.choice(rows, size=min(3, rows.size), replace=False)])
    return params, picks


def search(rng, draw, formulas, candidates, outputs, what: str, tries: int = 5000):
    """Seeded search for scales (from ``draw()``) on which the formulas can be told apart."""
    for _ in range(tries):
        scales = draw()
        found = discriminating(rng, formulas, scales, candidates, outputs)
        if found is not None:
            return scales, found[0], found[1]
    raise AssertionError(f"no {what} found in {tries} seeded tries")


def round_robin(picks: list, n: int) -> list:
    """n inputs that cover every pair's picks in turn."""
    return [picks[i % len(picks)][(i // len(picks)) % len(picks[i % len(picks)])] for i in range(n)]


def acc_window(scales, formulas):
    """The accumulators that can requantize differently under nearly equal multipliers: those
    next to a rounding boundary, acc * real = k + 1/2, with the result in the int8 range."""
    real = abs(quantize_multiplier_real(formulas["double"](*scales)))
    half = (np.arange(-300, 300) + 0.5) / real
    return (np.round(half).astype(np.int64)[:, None] + np.arange(-2, 3)).ravel()


def quantize_multiplier_real(pair) -> float:
    return pair[0] * 2.0 ** (pair[1] - 31)


# -- probes ----------------------------------------------------------------------------------
class Probe:
    """One op of the model: its inputs with their boundary values, its output, the formulas'
    parameters and predicted outputs, and how to read TinyEngine's parameters off the node."""

    def __init__(self, name, inputs, output, params, predict, ours):
        self.name, self.inputs, self.output = name, inputs, output
        self.params = params            # formula -> parameters (per channel: a list)
        self.predict = predict          # parameters -> predicted output on the boundary inputs
        self.ours = ours                # compiled node -> TinyEngine's parameters


def _weighted_probe(mb, rng, op: str, per_channel: bool, negative: bool = False) -> Probe:
    """FULLY_CONNECTED [1, 64] x [64, 64] (4096 MACs: enough for the DSP kernel), or CONV_2D /
    DEPTHWISE_CONV_2D 3x3 VALID on a 3x3 input (one output pixel).  Each output channel's bias
    puts its accumulator on a boundary accumulator found for its scales.  ``negative``: every
    other per-channel weight scale is negative."""
    tag = f"{op.lower()}_{'pc' if per_channel else 'pt'}{'_neg' if negative else ''}"
    ch = 64 if op == "FULLY_CONNECTED" else 16
    si = log_uniform(rng, 0.01, 0.1)
    x_zp, y_zp = int(rng.integers(-10, 10)), int(rng.integers(-20, 20))
    so = log_uniform(rng, 0.05, 0.5)
    if op == "FULLY_CONNECTED":
        x0 = rng.integers(-128, 128, (1, 64)).astype(np.int8)
        w = rng.integers(-127, 128, (ch, 64)).astype(np.int8)
        w2d, qdim, out_shape = w, 0, (1, ch)
    elif op == "CONV_2D":
        x0 = rng.integers(-128, 128, (1, 3, 3, 3)).astype(np.int8)
        w = rng.integers(-127, 128, (ch, 3, 3, 3)).astype(np.int8)
        w2d, qdim, out_shape = w.reshape(ch, -1), 0, (1, 1, 1, ch)
    else:
        x0 = rng.integers(-128, 128, (1, 3, 3, ch)).astype(np.int8)
        w = rng.integers(-127, 128, (1, 3, 3, ch)).astype(np.int8)
        w2d = np.zeros((ch, 9, ch), np.int8)
        for c in range(ch):
            w2d[c, :, c] = w.reshape(9, ch)[:, c]
        w2d, qdim, out_shape = w2d.reshape(ch, -1), 3, (1, 1, 1, ch)

    def draw(sign=1):
        return si, sign * log_uniform(rng, 1e-4 * so / si, 2e-3 * so / si), so

    def outputs(pair, accs):
        return requant(accs, pair, y_zp)

    found = [search(rng, lambda: draw(-1 if negative and g % 2 else 1), PRODUCT,
                    lambda s: acc_window(s, PRODUCT), outputs, f"{op} weight scales")
             for g in range(4 if per_channel else 1)]
    # (w scale, formula params, boundary accumulator) per channel: per channel, channel c has
    # the c % 4-th scale found (and the c // 4-th of its boundary accumulators)
    groups = [(f[0][1], f[1], round_robin(f[2], c // len(found) + 1)[c // len(found)])
              for c, f in zip(range(ch), itertools.cycle(found))]
    w_scale = np.array([g[0] for g in (groups if per_channel else groups[:1])])
    targets = np.array([g[2] for g in groups], np.int64)
    x = mb.tensor(f"{tag}_x", x0.shape, "int8", scale=si, zero_point=x_zp)
    wi = mb.const(f"{tag}_w", w, "int8", scale=w_scale, zero_point=np.zeros(w_scale.size, np.int64),
                  quantized_dimension=qdim)
    acc0 = w2d.astype(np.int64) @ (x0.reshape(-1).astype(np.int64) - x_zp)
    bias = (targets - acc0).astype(np.int32)
    b_scale = (F32(si) * w_scale.astype(F32)).astype(np.float64)
    bi = mb.const(f"{tag}_b", bias, "int32", scale=b_scale,
                  zero_point=np.zeros(w_scale.size, np.int64))
    y = mb.tensor(f"{tag}_y", out_shape, "int8", scale=so, zero_point=y_zp)
    opts = {} if op == "FULLY_CONNECTED" else dict(padding="VALID", stride_h=1, stride_w=1)
    if op == "DEPTHWISE_CONV_2D":
        opts["depth_multiplier"] = 1
    mb.op(op, [x, wi, bi], [y], **opts)
    params = {k: [g[1][k] for g in groups] for k in PRODUCT}

    def predict(pairs):
        return np.array([requant(t, p, y_zp) for t, p in zip(targets, pairs)]).reshape(out_shape)

    def ours(node):
        if op == "FULLY_CONNECTED" and not per_channel:
            return [per_tensor_multiplier(si, w_scale[0], so)] * ch
        m, s = per_channel_multipliers(si, w_scale, so, ch)
        return list(zip(m.tolist(), s.tolist()))

    return Probe(f"{op} {'per-channel' if per_channel else 'per-tensor'}"
                 f"{' (negative scales)' if negative else ''}", [(x, x0)], y, params, predict, ours)


def _int8_pairs():
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    return np.stack([a.ravel(), b.ravel()], axis=1)


def _add_out(ab, zps, params):
    (m1, s1), (m2, s2), (mo, so) = params
    a = np.asarray(mbqm((ab[:, 0] - zps[0]) * (1 << 20), m1, s1))
    b = np.asarray(mbqm((ab[:, 1] - zps[1]) * (1 << 20), m2, s2))
    return np.clip(np.asarray(mbqm(a + b, mo, so)) + zps[2], -128, 127)


def _mul_out(ab, zps, pair):
    return requant((ab[:, 0] - zps[0]) * (ab[:, 1] - zps[1]), pair, zps[2])


def _binary_probe(mb, rng, op: str, n=32) -> Probe:
    zps = tuple(int(v) for v in rng.integers(-20, 20, 3))
    formulas, out = (ADD, _add_out) if op == "ADD" else (PRODUCT, _mul_out)
    lo_out = 0.02 if op == "ADD" else 0.002

    def draw():
        return (log_uniform(rng, 0.01, 0.1), log_uniform(rng, 0.01, 0.1),
                log_uniform(rng, lo_out, 0.2))

    pairs = _int8_pairs()
    if op == "MUL":     # only the pairs whose product is next to a rounding boundary
        prods = (pairs[:, 0] - zps[0]) * (pairs[:, 1] - zps[1])
        uniq, first = np.unique(prods, return_index=True)

        def candidates(scales):
            return pairs[first[np.isin(uniq, acc_window(scales, formulas))]]
    else:
        candidates = pairs
    scales, params, picks = search(rng, draw, formulas, candidates,
                                   lambda p, ab: out(ab, zps, p), f"{op} scales")
    ab = np.array(round_robin(picks, n), np.int64)
    names = [f"{op.lower()}_a", f"{op.lower()}_b", f"{op.lower()}_y"]
    a, b, y = (mb.tensor(nm, (1, n), "int8", scale=s, zero_point=z)
               for nm, s, z in zip(names, scales, zps))
    mb.op(op, [a, b], [y])

    def ours(node):
        p = node.params
        if op == "ADD":
            return tuple((p[f"{k}_mult"], p[f"{k}_shift"]) for k in ("in1", "in2", "out"))
        return (p["out_mult"], p["out_shift"])

    a0, b0 = (ab[:, j].astype(np.int8).reshape(1, n) for j in (0, 1))
    return Probe(op, [(a, a0), (b, b0)], y, params, lambda p: out(ab, zps, p).reshape(1, n), ours)


def _mean_probe(mb, rng, n=16, k=49) -> Probe:
    """MEAN over the last axis of [1, n, 49] (a 7x7 global pool's count): QuantizedMeanOrSum
    folds 1/49 into the multiplier."""
    zi, zo = int(rng.integers(-20, 20)), int(rng.integers(-20, 20))

    def fold(pair):
        m, s = pair
        sh = min(k.bit_length() - 1, 32, 31 + s)
        return int((m << sh) // k), s - sh

    formulas = {nm: (lambda f: lambda *s: fold(f(*s)))(f) for nm, f in RATIO.items()}
    sums = np.arange(-128 * k, 127 * k + 1, dtype=np.int64)

    def draw():
        return log_uniform(rng, 0.01, 0.1), log_uniform(rng, 0.002, 0.05)

    scales, params, picks = search(rng, draw, formulas, sums,
                                   lambda p, s: requant(s - zi * k, p, zo), "MEAN scales")
    targets = round_robin(picks, n)
    rows = []
    for t in targets:                     # k int8 values that sum to t
        base, extra = divmod(int(t), k)
        rows.append([base + (1 if j < extra else 0) for j in range(k)])
    x0 = np.array(rows, np.int8).reshape(1, n, k)
    x = mb.tensor("mean_x", (1, n, k), "int8", scale=scales[0], zero_point=zi)
    axes = mb.const("mean_axes", np.array([2]), "int32")
    y = mb.tensor("mean_y", (1, n), "int8", scale=scales[1], zero_point=zo)
    mb.op("MEAN", [x, axes], [y], keep_dims=False)
    acc = np.array(targets, np.int64) - zi * k
    return Probe("MEAN", [(x, x0)], y, params, lambda p: requant(acc, p, zo).reshape(1, n),
                 lambda node: (node.params["mult"], node.params["shift"]))


REQUANT_RATIOS = {("int8", "int8"): (0.3, 3.0), ("int8", "int16"): (20.0, 200.0),
                  ("int16", "int8"): (0.001, 0.004), ("int16", "int16"): (0.3, 3.0)}


def _requantize_probe(mb, rng, din: str, dout: str, n=32) -> Probe:
    """QUANTIZE int -> int (reference_ops::Requantize), over every input value."""
    lo, hi = RANGE[din]
    zi = int(rng.integers(-20, 20)) if din == "int8" else 0
    zo = int(rng.integers(-20, 20)) if dout == "int8" else 0
    ratio = REQUANT_RATIOS[(din, dout)]

    def draw():
        si = log_uniform(rng, 1e-4, 1e-1)
        return si, float(F32(si / np.exp(rng.uniform(*np.log(ratio)))))

    scales, params, picks = search(rng, draw, RATIO, np.arange(lo, hi + 1, dtype=np.int64),
                                   lambda p, v: requant(v - zi, p, zo, dout),
                                   f"QUANTIZE {din}->{dout} scales", tries=20000)
    x0 = np.array(round_robin(picks, n), dtype=din).reshape(1, n)
    tag = f"requantize_{din}_{dout}"
    x = mb.tensor(f"{tag}_x", (1, n), din, scale=scales[0], zero_point=zi)
    y = mb.tensor(f"{tag}_y", (1, n), dout, scale=scales[1], zero_point=zo)
    mb.op("QUANTIZE", [x], [y])
    return Probe(f"QUANTIZE {din}->{dout}", [(x, x0)], y, params,
                 lambda p: requant(x0.astype(np.int64) - zi, p, zo, dout),
                 lambda node: (node.params["mult"], node.params["shift"]))


def _softmax_out(x, pair):
    """reference_ops::Softmax (int8 -> int8) with input multiplier ``pair``."""
    mult, shift = pair
    diff_min = -gl.calculate_input_radius(5, shift)
    x = np.asarray(x, np.int64)
    diff = x - x.max(axis=1, keepdims=True)
    e = gl.exp_on_negative_values(mbqm(diff, mult, shift), 5)
    terms = np.where(diff >= diff_min, gl.rescale(e, 0, 12), 0)
    total = gl.wrap_int32(terms.sum(axis=1, keepdims=True))
    scale, bits = gl.get_reciprocal(total, 12)
    out = gl.rdbpot(gl.srdhm(scale, e), np.minimum(bits + 31 - 8, 31))
    return np.where(diff >= diff_min, np.clip(out - 128, -128, 127), -128)


def _softmax_probe(mb, rng, rows=48, depth=10) -> Probe:
    """SOFTMAX with beta != 1 (PreprocessSoftmaxScaling's beta * input_scale)."""
    zi = int(rng.integers(-20, 20))
    cand = rng.integers(-128, 128, (3000, depth))

    def draw():
        return float(F32(rng.uniform(0.3, 3.0))), log_uniform(rng, 0.02, 0.3)

    (beta, si), params, picks = search(rng, draw, SOFTMAX_BETA, cand,
                                       lambda p, x: _softmax_out(x, p),
                                       "SOFTMAX beta and input scale", tries=3000)
    x0 = np.concatenate(picks + [cand[:rows]])[:rows].astype(np.int8)
    x = mb.tensor("softmax_x", (rows, depth), "int8", scale=si, zero_point=zi)
    y = mb.tensor("softmax_y", (rows, depth), "int8", scale=1 / 256, zero_point=-128)
    mb.op("SOFTMAX", [x], [y], beta=beta)
    return Probe("SOFTMAX", [(x, x0)], y, params, lambda p: _softmax_out(x0, p),
                 lambda node: (node.params["input_multiplier"], node.params["input_left_shift"]))


def _exhaustive_probes(mb, rng) -> list:
    """LOGISTIC on all 256 codes and LOG_SOFTMAX on random rows: no formula to tell apart."""
    probes = []
    si, zi = log_uniform(rng, 0.01, 0.2), int(rng.integers(-20, 20))
    x = mb.tensor("logistic_x", (1, 256), "int8", scale=si, zero_point=zi)
    y = mb.tensor("logistic_y", (1, 256), "int8", scale=1 / 256, zero_point=-128)
    mb.op("LOGISTIC", [x], [y])
    probes.append(Probe("LOGISTIC", [(x, np.arange(-128, 128).astype(np.int8).reshape(1, 256))], y,
                        None, None, None))
    si, zi = log_uniform(rng, 0.02, 0.3), int(rng.integers(-20, 20))
    x = mb.tensor("log_softmax_x", (16, 10), "int8", scale=si, zero_point=zi)
    y = mb.tensor("log_softmax_y", (16, 10), "int8", scale=16 / 256, zero_point=127)
    mb.op("LOG_SOFTMAX", [x], [y])
    probes.append(Probe("LOG_SOFTMAX", [(x, rng.integers(-128, 128, (16, 10)).astype(np.int8))], y,
                        None, None, None))
    return probes


WEIGHTED = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")


def build_probe_model(seed: int = SEED, negative: bool = False):
    """The model of every probe, or (``negative``) of the per-channel weighted ops with negative
    weight scales on every other channel group."""
    rng = np.random.default_rng(seed)
    mb = ModelBuilder("multiplier probes")
    if negative:
        probes = [_weighted_probe(mb, rng, op, True, negative=True) for op in WEIGHTED]
    else:
        probes = [_weighted_probe(mb, rng, op, pc) for op in WEIGHTED for pc in (False, True)]
        probes += [_binary_probe(mb, rng, "MUL"), _binary_probe(mb, rng, "ADD")]
        probes += [_mean_probe(mb, rng)]
        probes += [_requantize_probe(mb, rng, *io) for io in REQUANT_RATIOS]
        probes += [_softmax_probe(mb, rng)] + _exhaustive_probes(mb, rng)
    mb.inputs([t for p in probes for t, _ in p.inputs])
    mb.outputs([p.output for p in probes])
    boundary = [v for p in probes for _, v in p.inputs]
    return mb.build(), probes, boundary


def random_record(probes, rng) -> list:
    rec = []
    for p in probes:
        for _, v in p.inputs:
            lo, hi = RANGE[str(v.dtype)]
            rec.append(rng.integers(lo, hi, v.shape, endpoint=True).astype(v.dtype))
    return rec


def _probe_model(tmp_path_factory, negative: bool):
    model, probes, boundary = build_probe_model(negative=negative)
    rng = np.random.default_rng(SEED + 1)
    records = [boundary] + [random_record(probes, rng) for _ in range(7)]
    name = f"multiplier_probes{'_negative' if negative else ''}.tflite"
    path = tmp_path_factory.mktemp("probes") / name
    path.write_bytes(model)
    return path, probes, records, run_tflm_many(path, records)


@pytest.fixture(scope="module")
def probe_model(tmp_path_factory):
    return _probe_model(tmp_path_factory, negative=False)


@pytest.fixture(scope="module")
def negative_probe_model(tmp_path_factory):
    return _probe_model(tmp_path_factory, negative=True)


def check_formulas(probe_model):
    """On the boundary inputs TensorFlow Lite Micro's outputs single out one candidate formula
    per op (double arithmetic everywhere), and TinyEngine computes that formula's parameters."""
    path, probes, _, golden = probe_model
    graph = run_passes(load(path.read_bytes()))
    producer = {n.outputs[0]: n for n in graph.nodes}
    for i, p in enumerate(probes):
        if p.params is None:
            continue
        got = np.asarray(golden[0][i])
        agree = [k for k, prm in p.params.items()
                 if np.array_equal(p.predict(prm), got.reshape(p.predict(prm).shape))]
        assert agree == ["double"], \
            f"{p.name}: TFLite Micro agrees with {agree} of {list(p.params)}"
        assert p.ours(producer[graph.outputs[i]]) == p.params["double"], \
            f"{p.name}: TinyEngine's parameters are not TFLite Micro's"


def check_compiled(probe_model, board, tmp_path):
    """The compiled model, boundary record first, equals TensorFlow Lite Micro (one run)."""
    path, probes, records, golden = probe_model
    outputs = run_cli_on_records(path, board, records, tmp_path)
    for i, p in enumerate(probes):
        bad = [k for k, (ys, gs) in enumerate(zip(outputs, golden))
               if not np.array_equal(ys[i], np.asarray(gs[i]).reshape(ys[i].shape))]
        assert not bad, f"{p.name} on {board}: records {bad} differ from TFLite Micro"


BOARDS = ["host", pytest.param("stm32f746", marks=pytest.mark.qemu),
          pytest.param("stm32f411", marks=pytest.mark.qemu)]


def test_tflm_uses_one_formula_and_tinyengine_the_same(probe_model):
    check_formulas(probe_model)


@pytest.mark.parametrize("board", BOARDS)
def test_compiled_probes_equal_tflm(probe_model, board, tmp_path):
    check_compiled(probe_model, board, tmp_path)


def test_negative_weight_scales_use_the_same_formula(negative_probe_model):
    """Negative per-channel weight scales: the same formula, a negative multiplier."""
    check_formulas(negative_probe_model)


@pytest.mark.parametrize("board", BOARDS)
def test_negative_weight_scales_compiled_equal_tflm(negative_probe_model, board, tmp_path):
    check_compiled(negative_probe_model, board, tmp_path)


def test_fully_connected_refuses_a_negative_per_tensor_scale_product():
    """GetQuantizedConvolutionMultipler requires input scale * weight scale >= 0: TFLite Micro
    does not run such a per-tensor FULLY_CONNECTED, and TinyEngine says so instead of compiling
    a negative multiplier.  (Per-channel negative scales are fine: see above.)"""
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 4), "int8", scale=0.05, zero_point=0)
    w = mb.const("w", np.ones((3, 4), np.int8), "int8", scale=np.array([-0.01]),
                 zero_point=np.zeros(1, np.int64))
    y = mb.tensor("y", (1, 3), "int8", scale=0.01, zero_point=0)
    mb.op("FULLY_CONNECTED", [x, w, -1], [y])
    mb.inputs([x])
    mb.outputs([y])
    model = mb.build()
    with pytest.raises(GoldenError, match="could not load"):
        run_tflm_many(model, [[np.zeros((1, 4), np.int8)]])
    with pytest.raises(UnsupportedError, match=r"FULLY_CONNECTED.*negative per-tensor weight scale"):
        run_passes(load(model))
