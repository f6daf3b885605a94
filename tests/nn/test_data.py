"""Specification of graphnet.nn.data: data sets, splits, preprocessing, mini-batches."""

import numpy as np
import pytest

from graphnet import data
from graphnet.errors import DTypeError, GraphnetError, ShapeError


@pytest.fixture
def blobs():
    return data.synthetic_classification(600, 8, 3, seed=1)


# --------------------------------------------------------------------------- load_digits

def test_digits_have_the_documented_shape_dtype_and_range():
    X, y = data.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10))


def test_digits_dtype_is_selectable():
    X, _ = data.load_digits(dtype="float64")
    assert X.dtype == np.float64


def test_digits_are_scikit_learns_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = data.load_digits(dtype="float64")
    bunch = datasets.load_digits()
    np.testing.assert_array_equal(X * 16.0, bunch.data)
    np.testing.assert_array_equal(y, bunch.target)


def test_digits_load_without_sklearn(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    X, y = data.load_digits()
    assert X.shape == (1797, 64) and y.shape == (1797,)


def test_digits_refuse_an_integer_dtype():
    with pytest.raises(DTypeError, match="dtype"):
        data.load_digits(dtype="int32")


# --------------------------------------------------------------------------- synthetic data

def test_synthetic_classification_is_balanced_and_reproducible():
    X, y = data.synthetic_classification(100, 5, 4, seed=3, dtype="float64")
    X2, y2 = data.synthetic_classification(100, 5, 4, seed=3, dtype="float64")
    assert X.shape == (100, 5) and X.dtype == np.float64 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [25, 25, 25, 25]
    assert np.array_equal(X, X2) and np.array_equal(y, y2)


def test_synthetic_classification_rejects_bad_sizes():
    with pytest.raises(GraphnetError, match="n_classes"):
        data.synthetic_classification(10, 2, 0)


# --------------------------------------------------------------------------- split

def test_split_sizes_add_up_and_follow_the_fractions(blobs):
    X, y = blobs
    s = data.split(X, y, fractions=(0.7, 0.15, 0.15), seed=0)
    sizes = [len(part[1]) for part in s]
    assert sum(sizes) == 600
    # Stratification rounds per class, so allow one example per class of slack.
    for size, target in zip(sizes, (420, 90, 90)):
        assert abs(size - target) <= 3
    for part_X, part_y in s:
        assert len(part_X) == len(part_y)


def test_split_parts_are_disjoint_and_cover_the_data(blobs):
    X, y = blobs
    ids = np.arange(len(y))
    s = data.split(ids, y, seed=5)
    all_ids = np.concatenate([s.train[0], s.valid[0], s.test[0]])
    assert np.array_equal(np.sort(all_ids), ids)


def test_stratified_split_keeps_class_proportions():
    y = np.repeat([0, 1, 2], [500, 300, 200])
    X = np.arange(len(y))
    s = data.split(X, y, seed=2, stratify=True)
    for _, part_y in s:
        proportions = np.bincount(part_y, minlength=3) / len(part_y)
        np.testing.assert_allclose(proportions, [0.5, 0.3, 0.2], atol=0.01)


def test_split_is_reproducible_by_seed_and_varies_across_seeds(blobs):
    X, y = blobs
    a, b, c = data.split(X, y, seed=7), data.split(X, y, seed=7), data.split(X, y, seed=8)
    assert np.array_equal(a.train[0], b.train[0]) and np.array_equal(a.test[1], b.test[1])
    assert not np.array_equal(a.train[0], c.train[0])


def test_unstratified_split_has_exact_sizes(blobs):
    X, y = blobs
    s = data.split(X, y, fractions=(0.5, 0.25, 0.25), stratify=False)
    assert [len(p[1]) for p in s] == [300, 150, 150]


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1)])
def test_split_rejects_bad_fractions(blobs, fractions):
    with pytest.raises(GraphnetError, match="fractions"):
        data.split(*blobs, fractions=fractions)


def test_split_rejects_labels_of_the_wrong_length(blobs):
    X, y = blobs
    with pytest.raises(ShapeError, match="y"):
        data.split(X, y[:-1])


# --------------------------------------------------------------------------- Standardizer

def test_standardized_training_data_has_zero_mean_and_unit_std():
    rng = np.random.default_rng(0)
    X = rng.normal(5.0, 3.0, size=(500, 6)).astype(np.float32)
    X[:, 2] = 7.0  # a constant column, like an always-blank border pixel
    Z = data.Standardizer().fit_transform(X)
    assert Z.dtype == np.float32
    varying = [0, 1, 3, 4, 5]
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(Z[:, varying].std(axis=0), 1.0, rtol=1e-4)
    # The constant column is centred, not divided by zero.
    assert np.all(np.isfinite(Z)) and np.all(Z[:, 2] == 0.0)


def test_validation_data_is_transformed_with_training_statistics():
    rng = np.random.default_rng(1)
    X_train = rng.normal(0.0, 1.0, size=(400, 3))
    X_valid = rng.normal(10.0, 4.0, size=(100, 3))
    scaler = data.Standardizer().fit(X_train)
    Z_valid = scaler.transform(X_valid)
    expected = (X_valid - X_train.mean(axis=0)) / X_train.std(axis=0)
    np.testing.assert_allclose(Z_valid, expected)
    # Its own statistics would have given mean 0: training ones leave it near 10.
    assert np.all(Z_valid.mean(axis=0) > 5.0)


def test_standardizer_inverse_transform_round_trips():
    X = np.random.default_rng(2).normal(3.0, 2.0, size=(50, 4))
    scaler = data.Standardizer().fit(X)
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(X)), X)


def test_standardizer_turns_integer_pixels_into_float64():
    X = np.random.default_rng(3).integers(0, 17, size=(30, 5))
    assert data.Standardizer().fit_transform(X).dtype == np.float64


def test_standardizer_must_be_fitted_and_shapes_must_agree():
    with pytest.raises(GraphnetError, match="not fitted"):
        data.Standardizer().transform(np.zeros((2, 3)))
    scaler = data.Standardizer().fit(np.ones((4, 3)))
    with pytest.raises(ShapeError, match="3"):
        scaler.transform(np.zeros((2, 5)))


# --------------------------------------------------------------------------- PCA

def _correlated(n=2000, d=5, seed=0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d))
    return rng.normal(size=(n, d)) @ mixing + rng.normal(size=d)


def test_pca_whitened_training_data_has_identity_covariance():
    X = _correlated()
    Z = data.PCA(whiten=True, eps=0.0).fit_transform(X)
    np.testing.assert_allclose(np.cov(Z, rowvar=False), np.eye(5), atol=1e-8)


def test_pca_whitening_with_small_eps_is_nearly_identity():
    X = _correlated()
    Z = data.PCA(whiten=True).fit_transform(X)
    np.testing.assert_allclose(np.cov(Z, rowvar=False), np.eye(5), atol=1e-3)


def test_pca_without_whitening_decorrelates_into_sorted_variances():
    X = _correlated()
    pca = data.PCA().fit(X)
    C = np.cov(pca.transform(X), rowvar=False)
    np.testing.assert_allclose(C, np.diag(pca.explained_variance_), atol=1e-8)
    np.testing.assert_allclose(np.diag(C), np.linalg.eigvalsh(np.cov(X, rowvar=False))[::-1])
    assert np.all(np.diff(pca.explained_variance_) <= 0)


@pytest.mark.parametrize("whiten", [False, True])
def test_pca_round_trips_with_all_components(whiten):
    X = _correlated().astype(np.float32)
    pca = data.PCA(whiten=whiten).fit(X)
    back = pca.inverse_transform(pca.transform(X))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, X, rtol=1e-4, atol=1e-4)


def test_pca_explained_variance_ratio_sums_to_one_with_all_components():
    X = _correlated()
    full = data.PCA().fit(X)
    assert full.explained_variance_ratio_.sum() == pytest.approx(1.0)
    top2 = data.PCA(n_components=2).fit(X)
    assert top2.transform(X).shape == (2000, 2)
    np.testing.assert_allclose(top2.explained_variance_ratio_, full.explained_variance_ratio_[:2])


def test_pca_rejects_too_many_components():
    with pytest.raises(GraphnetError, match="n_components"):
        data.PCA(n_components=10).fit(np.random.default_rng(0).normal(size=(20, 4)))


# --------------------------------------------------------------------------- minibatches

def test_minibatches_cover_every_example_exactly_once_per_epoch():
    X = np.arange(103)[:, None] * np.ones((1, 2))
    y = np.arange(103)
    seen = []
    for Xb, yb in data.minibatches(X, y, batch_size=10, seed=0):
        assert len(Xb) == len(yb) <= 10
        assert np.array_equal(Xb[:, 0], yb)  # rows and labels stay paired
        seen.extend(yb.tolist())
    assert sorted(seen) == list(range(103))
    assert seen != list(range(103))  # shuffled


def test_minibatches_are_reproducible_with_a_seed():
    X, y = np.arange(50), np.arange(50)
    first = [yb.tolist() for _, yb in data.minibatches(X, y, 8, seed=4)]
    again = [yb.tolist() for _, yb in data.minibatches(X, y, 8, seed=4)]
    other = [yb.tolist() for _, yb in data.minibatches(X, y, 8, seed=5)]
    assert first == again and first != other


def test_minibatches_without_shuffle_keep_order_and_can_drop_the_last_batch():
    X, y = np.arange(25), np.arange(25)
    sizes = [len(yb) for _, yb in data.minibatches(X, y, 10, shuffle=False)]
    assert sizes == [10, 10, 5]
    kept = [yb for _, yb in data.minibatches(X, y, 10, shuffle=False, drop_last=True)]
    assert [b.tolist() for b in kept] == [list(range(10)), list(range(10, 20))]


def test_minibatches_reject_bad_arguments_at_call_time():
    with pytest.raises(GraphnetError, match="batch_size"):
        data.minibatches(np.zeros((4, 2)), np.zeros(4), batch_size=0)
    with pytest.raises(ShapeError, match="y"):
        data.minibatches(np.zeros((4, 2)), np.zeros(3), batch_size=2)
