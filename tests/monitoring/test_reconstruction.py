"""The PCA reconstruction error: fitted on training rows, binned by the calibration rows' deciles, and what it sees
that per-feature PSI cannot."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from service.card import NumericProfile, ReconstructionFit
from service.classifiers import profile_features
from service.monitoring import reconstruction
from service.monitoring.drift import psi
from service.monitoring.reconstruction import ERROR_BINS, VARIANCE_KEPT, Reconstruction, fit_reconstruction


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Breast cancer shuffled once: training, calibration and held-out rows (60/20/20), and its feature names."""
    data = load_breast_cancer()
    X = data.data[np.random.default_rng(0).permutation(len(data.data))]
    a, b = len(X) * 6 // 10, len(X) * 8 // 10
    return X[:a], X[a:b], X[b:], list(data.feature_names)


@pytest.fixture(scope="module")
def fitted() -> ReconstructionFit:
    train, calibration, _, names = split()
    result = fit_reconstruction(train, calibration, names, names)
    assert result is not None
    return result


def test_the_fit_keeps_the_components_of_90_percent_of_the_variance(fitted: ReconstructionFit) -> None:
    components = np.asarray(fitted.components)
    _, calibration, _, names = split()
    assert 1 <= len(components) < len(names) and components.shape[1] == len(names)
    assert fitted.explained_variance >= VARIANCE_KEPT
    assert np.allclose(components @ components.T, np.eye(len(components)), atol=1e-5)  # orthonormal once rounded
    assert fitted.rows == len(calibration)
    assert len(fitted.edges) == ERROR_BINS - 1
    assert sum(fitted.proportions) == pytest.approx(1.0, abs=1e-5)
    assert max(fitted.proportions) < 0.11  # deciles of the calibration rows


def test_columns_permuted_independently_keep_every_marginal_and_break_the_reconstruction(
    fitted: ReconstructionFit,
) -> None:
    """Held-out rows reconstruct as well as the calibration rows (low PSI over the error bins); the same rows with
    each column permuted on its own keep every feature's distribution (each per-feature PSI against the training
    profile is what the clean rows give, near 0) and reconstruct far worse."""
    train, _, held_out, names = split()
    shuffled = held_out.copy()
    rng = np.random.default_rng(1)
    for j in range(shuffled.shape[1]):
        shuffled[:, j] = rng.permutation(shuffled[:, j])
    reconstruction = Reconstruction(fitted)
    reference = np.asarray(reconstruction.shares)
    clean_psi = psi(reconstruction.counts(held_out), reference)
    shuffled_psi = psi(reconstruction.counts(shuffled), reference)
    assert clean_psi < 0.5 and shuffled_psi > 3.0
    assert np.median(reconstruction.errors(shuffled)) > 5 * np.median(reconstruction.errors(held_out))

    profile = profile_features(train, names, frozenset())

    def feature_psi(rows: np.ndarray, j: int) -> float:
        reference = profile[names[j]]
        assert isinstance(reference, NumericProfile)
        edges = np.asarray(reference.edges)
        counts = np.bincount(np.searchsorted(edges, rows[:, j], side="right"), minlength=len(edges) + 1)
        return psi(counts, np.asarray(reference.proportions))

    for j in range(len(names)):  # a permutation of a column has the column's own values: the same bin counts
        assert feature_psi(shuffled, j) == pytest.approx(feature_psi(held_out, j))
    assert max(feature_psi(shuffled, j) for j in range(len(names))) < 0.5


def test_missing_and_non_finite_values_are_imputed_with_the_training_median(fitted: ReconstructionFit) -> None:
    _, _, held_out, _ = split()
    reconstruction = Reconstruction(fitted)
    row = held_out[:1].copy()
    imputed = row.copy()
    row[0, [2, 5, 7]] = [np.nan, np.inf, -np.inf]
    imputed[0, [2, 5, 7]] = np.asarray(fitted.median)[[2, 5, 7]]
    assert reconstruction.errors(row) == pytest.approx(reconstruction.errors(imputed))


def test_values_too_large_for_the_arithmetic_fall_in_the_top_bin(fitted: ReconstructionFit) -> None:
    _, _, held_out, _ = split()
    reconstruction = Reconstruction(fitted)
    rows = held_out[:3].copy()
    rows[1, 0] = 1e300
    errors = reconstruction.errors(rows)
    assert np.isfinite(errors[[0, 2]]).all() and errors[1] == np.inf
    counts = reconstruction.counts(rows)
    assert counts.sum() == 3 and counts[-1] >= 1


def test_too_little_to_fit_gives_no_signal() -> None:
    train, calibration, _, names = split()
    assert fit_reconstruction(train, calibration, names, names[:1]) is None  # one numeric feature: no subspace
    assert fit_reconstruction(train[:1], calibration, names, names) is None
    assert fit_reconstruction(np.zeros((10, 3)), np.zeros((5, 3)), ["a", "b", "c"], ["a", "b", "c"]) is None


def test_the_numeric_features_are_read_by_name_from_a_frame_or_a_matrix_in_column_order() -> None:
    pd = pytest.importorskip("pandas")
    train, calibration, _, names = split()
    ranked = names[:2:-1]  # the features after the third, most sensitive last
    frame = fit_reconstruction(
        pd.DataFrame(train, columns=names), pd.DataFrame(calibration, columns=names), names, ranked
    )
    matrix = fit_reconstruction(train, calibration, names, ranked)
    assert frame == matrix and frame is not None and frame.features == tuple(names[3:])


def test_a_wide_model_keeps_its_most_sensitive_features(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond `MAX_FEATURES` numeric features, the most sensitive ones, in column order: the metadata stays bounded."""
    monkeypatch.setattr(reconstruction, "MAX_FEATURES", 5)
    train, calibration, _, names = split()
    ranked = [names[j] for j in (20, 3, 11, 0, 7, 1, 2)]
    fitted = fit_reconstruction(train, calibration, names, ranked)
    assert fitted is not None and fitted.features == tuple(names[j] for j in (0, 3, 7, 11, 20))
    assert np.shape(fitted.components)[1] == 5
