"""tinynas.space: candidates (JSON, hashing, validation), seeded sampling / mutation / crossover, and the
analytic MAC and parameter counts checked against the PyTorch subnet's own layers."""
import json
import random

import pytest

from tinynas.errors import CandidateError, TinyNasError
from tinynas.space import Candidate, SearchSpace, make_divisible

TINY = SearchSpace(width_mult=0.25, resolutions=(12, 16), stage_widths=(24, 40, 80), stage_strides=(2, 2, 2),
                   stage_depths=((1, 2), (1, 2), (1,)))


def test_make_divisible_matches_mobilenetv2_widths():
    # the published MobileNetV2 0.35 and 1.4 (Keras applications) have these channel counts
    base = (32, 16, 24, 32, 64, 96, 160, 320)
    assert [make_divisible(c * 0.35) for c in base] == [16, 8, 8, 16, 24, 32, 56, 112]
    assert [make_divisible(c * 1.4) for c in base] == [48, 24, 32, 48, 88, 136, 224, 448]


def test_candidate_json_round_trip_and_hash():
    space = SearchSpace()
    rng = random.Random(0)
    cands = [space.sample(rng) for _ in range(50)]
    for c in cands:
        again = Candidate.from_json(c.to_json())
        assert again == c and hash(again) == hash(c)
        assert json.loads(c.to_json())["r"] in space.resolutions
    assert len(set(cands)) == len(cands)          # 50 random draws of a ~1e19 space differ
    assert {cands[0]: 1}[Candidate.from_dict(cands[0].to_dict())] == 1


def test_sampling_is_seeded_and_valid():
    space = SearchSpace()
    a = [space.sample(random.Random(7)) for _ in range(3)]
    b = [space.sample(random.Random(7)) for _ in range(3)]
    assert a == b
    rng = random.Random(1)
    seen_depths = set()
    for _ in range(200):
        c = space.validate(space.sample(rng))
        seen_depths.update(c.depths[:5])
    assert seen_depths == {2, 3, 4}


def test_mutation_and_crossover():
    space = SearchSpace()
    rng = random.Random(3)
    a, b = space.sample(rng), space.sample(rng)
    assert space.mutate(a, random.Random(0), prob=0.0) == a
    changed = space.mutate(a, random.Random(0), prob=1.0)
    space.validate(changed)
    assert changed != a
    assert space.mutate(a, random.Random(5), 0.3) == space.mutate(a, random.Random(5), 0.3)
    for seed in range(20):
        child = space.validate(space.crossover(a, b, random.Random(seed)))
        assert child.r in (a.r, b.r)
        for s in range(len(space.stage_widths)):
            assert len(child.ks[s]) in (len(a.ks[s]), len(b.ks[s]))
            for i, (k, e) in enumerate(zip(child.ks[s], child.e[s])):
                assert k in {p.ks[s][i] for p in (a, b) if i < len(p.ks[s])}
                assert e in {p.e[s][i] for p in (a, b) if i < len(p.e[s])}
    assert space.crossover(a, a, random.Random(0)) == a


@pytest.mark.parametrize("d, needle", [
    ({"r": 100, "ks": [[3, 3]] * 5 + [[3]], "e": [[3, 3]] * 5 + [[3]]}, "resolution 100 not in"),
    ({"r": 96, "ks": [[3, 9]] + [[3, 3]] * 4 + [[3]], "e": [[3, 3]] * 5 + [[3]]}, "stage 0 block 1: kernel 9 not in [3, 5, 7]"),
    ({"r": 96, "ks": [[3, 3]] * 5 + [[3]], "e": [[3, 3]] * 4 + [[3, 5]] + [[3]]}, "stage 4 block 1: expand ratio 5"),
    ({"r": 96, "ks": [[3]] + [[3, 3]] * 4 + [[3]], "e": [[3]] + [[3, 3]] * 4 + [[3]]}, "stage 0 depth 1 not in [2, 3, 4]"),
    ({"r": 96, "ks": [[3, 3]] * 5, "e": [[3, 3]] * 5}, "need 6 stages"),
    ({"r": 96, "ks": [[3, 3]] * 5 + [[3]], "e": [[3, 3, 3]] + [[3, 3]] * 4 + [[3]]}, "stage 0 has 2 kernels but 3"),
])
def test_validation_names_the_bad_value(d, needle):
    with pytest.raises(CandidateError, match=None) as info:
        SearchSpace().validate(Candidate.from_dict(d))
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("d, needle", [
    ({"r": 96, "ks": [], "e": [], "se": True}, "unknown se"),
    ({"r": "96", "ks": [], "e": []}, "r must be an integer"),
    ({"r": 96, "ks": [3, 3], "e": []}, "ks must be a list of per-stage lists"),
    ([1, 2], "expected an object"),
])
def test_malformed_candidate_json(d, needle):
    with pytest.raises(CandidateError) as info:
        Candidate.from_dict(d)
    assert needle in str(info.value)
    with pytest.raises(CandidateError, match="not JSON"):
        Candidate.from_json("{r: 96")


@pytest.mark.parametrize("kw, needle", [
    ({"kernel_sizes": (3, 4)}, "kernel_sizes must be odd"),
    ({"expand_ratios": (1, 3)}, "expand_ratios must be a non-empty list of integers >= 2"),
    ({"stage_strides": (2, 2)}, "one entry per stage"),
    ({"resolutions": (160, 128)}, "increasing"),
    ({"width_mult": 0}, "width_mult must be a positive number"),
])
def test_bad_space(kw, needle):
    with pytest.raises(TinyNasError) as info:
        SearchSpace(**kw)
    assert needle in str(info.value)


def test_space_json_round_trip():
    for space in (SearchSpace(), TINY, SearchSpace(width_mult=0.5, se=True)):
        assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    with pytest.raises(TinyNasError, match="unknown key.*bogus"):
        SearchSpace.from_dict({"bogus": 1})


def _torch_counts(net, r, in_channels):
    """MACs from forward hooks on the PyTorch modules' real shapes, parameters from the tensors."""
    import torch
    macs = []

    def hook(m, inp, out):
        if isinstance(m, torch.nn.Conv2d):
            macs.append(out.numel() // out.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1])
        else:
            macs.append(m.in_features * m.out_features)
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(hook)
    net.eval()
    with torch.no_grad():
        net(torch.zeros(2, in_channels, r, r))
    return sum(macs), sum(p.numel() for p in net.parameters())


@pytest.mark.usefixtures("torch_one_thread")
@pytest.mark.parametrize("space", [SearchSpace(width_mult=0.35, resolutions=(48, 64)), TINY,
                                   SearchSpace(width_mult=0.25, resolutions=(32, 40), se=True, in_channels=1)],
                         ids=["mcunet-0.35", "tiny", "se"])
def test_analytic_counts_equal_pytorch_subnet(space):
    pytest.importorskip("torch")
    from tinynas.supernet import SuperNet
    net = SuperNet(space)
    rng = random.Random(11)
    for c in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(3)]:
        macs, params = _torch_counts(net.get_active_subnet(c), c.r, space.in_channels)
        assert (space.macs(c), space.params(c)) == (macs, params), c


@pytest.mark.usefixtures("torch_one_thread")
def test_default_space_counts_at_full_scale():
    # the default space at width 1.0 (no 1280-channel feature-mix layer), counted by PyTorch hooks
    pytest.importorskip("torch")
    from tinynas.supernet import SuperNet
    space = SearchSpace(num_classes=1000)
    net = SuperNet(space)
    for c in (space.largest(), space.smallest()):
        assert (space.macs(c), space.params(c)) == _torch_counts(net.get_active_subnet(c), c.r, 3)
    assert space.macs(space.smallest()) < space.macs(space.largest()) / 5
