"""tinynas.data's splits: training, validation (the search chooses by it) and test (held out from both,
the deployed network is measured on it); with test_fraction 1/K the test splits of folds 0..K-1 are a
k-fold partition of the data. Bad fractions and folds: one-line errors."""
import pytest

torch = pytest.importorskip("torch")

from tinynas.data import _split, load  # noqa: E402
from tinynas.errors import TinyNasError  # noqa: E402


@pytest.fixture(scope="module")
def labels():
    from sklearn.datasets import load_digits
    return torch.tensor(load_digits().target)


def test_folds_partition_the_data(labels):
    """Over folds 0..4 every image is a test image exactly once; in each fold training, validation and
    test never share an image and together hold all of them; per class 20% test and 20% validation."""
    tested = []
    for k in range(5):
        train, val, test = (set(s.tolist()) for s in _split(labels, 0.2, 0, 0.2, k))
        assert not train & val and not train & test and not val & test
        assert train | val | test == set(range(len(labels)))
        for c in range(10):
            n_c = int((labels == c).sum())
            assert abs(sum(int(labels[i]) == c for i in test) - n_c / 5) <= 1
            assert abs(sum(int(labels[i]) == c for i in val) - n_c / 5) <= 1
        tested += test
    assert sorted(tested) == list(range(len(labels)))


def test_load_gives_the_three_splits(labels):
    d = load("digits", 8, None, 0.2, 0, 0.2, 3)
    train, val, test = _split(labels, 0.2, 0, 0.2, 3)
    assert torch.equal(d.test_y, labels[test]) and torch.equal(d.val_y, labels[val])
    assert torch.equal(d.train_y, labels[train]) and len(d.val_y) == 359 and len(d.test_y) in (359, 360)
    assert d.test_x.shape == (len(d.test_y), 1, 8, 8)


def test_without_a_test_split_the_two_way_split_is_kept(labels):
    """test_fraction 0 (checkpoints from before the test split): no test split, 20% validation."""
    two = load("digits", 8, None, 0.2, 5)
    assert two.test_x is None and two.test_y is None
    train, val, test = _split(labels, 0.2, 5)
    assert len(test) == 0 and len(val) == 359 and len(train) == 1797 - 359
    assert torch.equal(two.val_y, labels[val])


@pytest.mark.parametrize("val, test, fold, words", [
    (0.5, 0.5, 0, "--test-fraction"), (0.2, -0.1, 0, "--test-fraction"),
    (0.2, 0.2, 5, "--test-fold must be between 0 and 4"), (0.2, 0.25, -1, "--test-fold"),
])
def test_bad_fractions_and_folds(val, test, fold, words):
    with pytest.raises(TinyNasError, match=words):
        load("digits", 8, None, val, 0, test, fold)
