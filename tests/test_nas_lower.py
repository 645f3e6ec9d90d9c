"""tinynas.lower: a candidate becomes an int8 tinyengine graph with the subnet's layers; compiled from
memory, it runs on the host bit-exact with TensorFlow Lite Micro running the same network as a .tflite."""
import random

import numpy as np
import pytest

import tinyengine as te
from tests.golden import run_tflm_many
from tests.tflite_builder import from_graph
from tinynas.errors import CandidateError, TinyNasError
from tinynas.lower import layer_names, lower
from tinynas.space import Candidate, SearchSpace

TINY = SearchSpace(width_mult=0.25, resolutions=(12, 16), stage_widths=(24, 40, 80), stage_strides=(2, 2, 2),
                   stage_depths=((1, 2), (1, 2), (1,)))


def test_graph_has_the_subnets_layers():
    space = SearchSpace()
    c = space.sample(random.Random(4))
    g = lower(space, c)
    convs = [n for n in g.nodes if n.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    layers = space.layers(c)
    assert len(convs) == len(layers)
    kinds = {"CONV_2D": ("conv", "pw"), "DEPTHWISE_CONV_2D": ("dw",), "FULLY_CONNECTED": ("fc",)}
    macs = 0
    for node, layer in zip(convs, layers):
        assert layer.kind in kinds[node.op], (node, layer)
        w = g.tensors[node.inputs[1]]
        out = g.tensors[node.outputs[0]]
        assert out.shape[-1] == layer.cout
        if node.op != "FULLY_CONNECTED":
            assert out.shape[1] == layer.out_hw and w.shape[1] == layer.k
            assert node.attrs["stride"] == (layer.stride, layer.stride)
            assert w.quant.axis == (3 if node.op == "DEPTHWISE_CONV_2D" else 0)
            assert w.quant.scale.size == layer.cout               # per-channel weights
        macs += out.size // out.shape[0] * (w.size // w.shape[0] if node.op == "CONV_2D" else
                                            w.shape[1] * w.shape[2] if node.op == "DEPTHWISE_CONV_2D" else w.shape[1])
    assert macs == space.macs(c)                                  # the analytic count is the graph's
    adds = [n for n in g.nodes if n.op == "ADD"]
    assert len(adds) == sum(b.residual for b in space.blocks(c))
    assert [n.name for n in convs] == layer_names(space, c)
    # seeded: the same seed gives the same weights, another seed others
    again, other = lower(space, c, seed=0), lower(space, c, seed=1)
    w0 = g.tensors["stem.weight"].data
    assert np.array_equal(again.tensors["stem.weight"].data, w0)
    assert not np.array_equal(other.tensors["stem.weight"].data, w0)


@pytest.mark.parametrize("seed", [0, 1])
def test_candidate_runs_bit_exact_with_tflm(tmp_path, seed):
    rng = random.Random(seed)
    c = TINY.largest() if seed == 0 else TINY.sample(rng)
    g = lower(TINY, c, seed=seed)
    model = tmp_path / "cand.tflite"
    model.write_bytes(from_graph(g))
    compiled = te.compile_graph(g, te.CompileOptions(board="host"))
    records = te.random_records(compiled.graph, 3, seed=seed)
    expected = run_tflm_many(model, records)
    te.write_project(compiled, tmp_path / "p")
    result = te.build_and_run(compiled, tmp_path / "p", records)
    for got, want in zip(result.outputs, expected):
        want = np.asarray(want[0]).reshape(got[0].shape)
        np.testing.assert_array_equal(got[0], want)
    # the logits differ between inputs and are not all saturated: the quantization is plausible
    outs = np.stack([np.asarray(w[0]).ravel() for w in expected])
    assert len(np.unique(outs)) > 5 and np.mean(np.abs(outs) == 128) < 0.5 and np.mean(outs == 127) < 0.5


def test_given_float_weights_are_quantized_per_channel():
    c = TINY.smallest()
    base = lower(TINY, c)
    rng = np.random.default_rng(0)
    weights = {n.name: rng.normal(0, 0.3, size=base.tensors[n.inputs[1]].shape)
               for n in base.nodes if n.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")}
    g = lower(TINY, c, weights=weights)
    w = g.tensors["stem.weight"]
    real = w.data.astype(np.float64) * w.quant.scale.reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(real, weights["stem"], atol=w.quant.scale.max() / 2 + 1e-12)
    assert np.abs(w.data).max() == 127
    with pytest.raises(TinyNasError, match="no entry for layer 'stem'"):
        lower(TINY, c, weights={k: v for k, v in weights.items() if k != "stem"})
    with pytest.raises(TinyNasError, match="layer 'fc' has shape"):
        lower(TINY, c, weights={**weights, "fc": np.zeros((3, 3))})
    with pytest.raises(TinyNasError, match="not layers of the candidate"):
        lower(TINY, c, weights={**weights, "s9.b0.dw": np.zeros(3)})


def test_bad_candidates_and_se_are_refused_in_one_line():
    with pytest.raises(CandidateError, match="resolution 20 not in"):
        lower(TINY, Candidate(20, TINY.smallest().ks, TINY.smallest().e))
    se = SearchSpace(se=True)
    with pytest.raises(TinyNasError, match="se=true cannot be lowered"):
        lower(se, se.smallest())
