"""tinytrain.data: image folders, .npz files and the digits demo as the model's int8 input;
every malformed input one line through `tinytrain fit` / `run` with exit 2."""
from __future__ import annotations

import numpy as np
import pytest

from tinytrain import data as dm

SHAPE = (10, 10, 3)


def write_folder(root, classes=3, per_class=2, size=(7, 5), mode="RGB"):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 256, size + ((3,) if mode == "RGB" else ()), dtype=np.uint8)
            Image.fromarray(a, mode).save(root / f"class{c}" / f"{i}.png")
    return root


def test_folder_resized_to_the_model_input(tmp_path):
    d = dm.load(write_folder(tmp_path / "imgs", mode="L"), SHAPE, 3)
    assert d.x.shape == (6,) + SHAPE and d.x.dtype == np.float32
    assert list(d.y) == [0, 0, 1, 1, 2, 2]
    assert 0 <= d.x.min() and d.x.max() <= 1
    # grey repeated to RGB
    assert np.array_equal(d.x[..., 0], d.x[..., 2])


def test_resize_matches_torch_bilinear():
    """The bilinear resize equals torch's (align_corners=False, no antialias) up- and down."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    a = rng.random((2, 8, 6, 3)).astype(np.float32)
    for h, w in ((80, 80), (5, 3), (8, 6)):
        want = torch.nn.functional.interpolate(torch.from_numpy(a).permute(0, 3, 1, 2), (h, w),
                                               mode="bilinear", align_corners=False)
        np.testing.assert_allclose(dm.resize(a, h, w), want.permute(0, 2, 3, 1).numpy(),
                                   atol=1e-6)


def test_npz_uint8_float_and_grey(tmp_path):
    rng = np.random.default_rng(2)
    f = tmp_path / "d.npz"
    x = rng.integers(0, 256, (4, 10, 10), dtype=np.uint8)
    np.savez(f, x=x, y=np.array([0, 1, 2, 1]))
    d = dm.load(f, SHAPE, 3)
    assert d.x.shape == (4,) + SHAPE
    np.testing.assert_allclose(d.x[..., 1], x / 255.0, atol=1e-6)
    np.savez(f, x=x[..., None] / 255.0, y=np.array([0, 1, 2, 1]))
    assert np.allclose(dm.load(f, SHAPE, 3).x, d.x, atol=1e-6)


def test_quantize_maps_unit_range_onto_int8():
    q = dm.quantize(np.array([0.0, 0.5, 1.0, 1.5, -1.0]))
    assert q.dtype == np.int8 and list(q) == [-128, 0, 127, 127, -128]


def test_digits_split_half_and_seeded():
    tr, te_ = dm.digits((16, 16, 3), seed=0)
    assert len(tr) + len(te_) == 1797 and abs(len(tr) - len(te_)) <= 10
    assert set(tr.y) == set(te_.y) == set(range(10))
    assert tr.x.shape[1:] == (16, 16, 3)
    tr2, _ = dm.digits((16, 16, 3), seed=0)
    assert np.array_equal(tr.y, tr2.y) and np.array_equal(tr.x, tr2.x)
    tr3, _ = dm.digits((16, 16, 3), seed=1)
    assert not np.array_equal(tr.y, tr3.y)
    small, _ = dm.digits((16, 16, 3), limit=20)
    assert len(small) == 20


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "no such file or folder"),
    (lambda p: (p.mkdir(), p)[1], "no class sub-folders"),
    (lambda p: write_folder(p, classes=2), "2 class folders (class0, class1) but --classes 3"),
    (lambda p: ((p / "a").mkdir(parents=True), (p / "b").mkdir(), (p / "c").mkdir(),
                (p / "a" / "x.txt").write_text("not an image"), p)[-1], "a: no images"),
    (lambda p: (write_folder(p), (p / "class1" / "bad.png").write_bytes(b"nope"), p)[-1],
     "bad.png: not a readable image"),
    (lambda p: (p.with_suffix(".txt").write_text("x"), p.with_suffix(".txt"))[-1],
     "not a folder or an .npz file"),
    (lambda p: (np.savez(p.with_suffix(".npz"), x=np.zeros((2, 4, 4, 3))),
                p.with_suffix(".npz"))[-1], "no array 'y'"),
    (lambda p: (np.savez(p.with_suffix(".npz"), x=np.zeros((2, 4, 4, 3)), y=[0, 5]),
                p.with_suffix(".npz"))[-1], "label 5 is outside [0, 3)"),
    (lambda p: (np.savez(p.with_suffix(".npz"), x=np.zeros((2, 4, 4, 3)), y=[0]),
                p.with_suffix(".npz"))[-1], "x has 2 images but y 1 labels"),
    (lambda p: (np.savez(p.with_suffix(".npz"), x=np.full((2, 4, 4, 3), 2.0), y=[0, 1]),
                p.with_suffix(".npz"))[-1], "float x must lie in [0, 1]"),
    (lambda p: (np.savez(p.with_suffix(".npz"), x=np.zeros((2, 4, 4, 5), np.uint8), y=[0, 1]),
                p.with_suffix(".npz"))[-1], "images have 5 channels; the model takes 3"),
    (lambda p: (np.savez(p.with_suffix(".npz"), x=np.zeros((2, 4), np.uint8), y=[0, 1]),
                p.with_suffix(".npz"))[-1], "x must be [N, H, W, C]"),
])
def test_bad_data_is_one_line_exit_2(tmp_path, capsys, make, message):
    """Through the CLI: one line naming the file or folder, exit 2; the data module raises
    DataError with the same message."""
    from tests.test_train_graph import small_model
    from tinytrain import cli

    src = make(tmp_path / "data")
    with pytest.raises(dm.DataError, match=None) as e:
        dm.load(src, SHAPE, 3)
    assert message in str(e.value)
    model = small_model(tmp_path / "small.tflite", batch=1)
    good = write_folder(tmp_path / "good")
    for cmd in (["fit", "--host"], ["run", "-o", str(tmp_path / "out")]):
        argv = [*cmd[:1], str(model), "--classes", "3", "--board", "host", *cmd[1:],
                "--train", str(src), "--test", str(good)]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("tinytrain: error:") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_digits_needs_ten_classes(tmp_path, capsys):
    from tests.test_train_graph import small_model
    from tinytrain import cli

    model = small_model(tmp_path / "small.tflite", batch=1)
    for cmd in (["fit", "--host"], ["run", "-o", str(tmp_path / "out")]):
        argv = [cmd[0], str(model), "--classes", "3", "--board", "host", *cmd[1:],
                "--train", "digits", "--test", "digits"]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--train digits has 10 classes, but --classes 3" in err[0], err
    assert not (tmp_path / "out").exists()
