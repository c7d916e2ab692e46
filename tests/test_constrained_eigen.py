"""The constrained M-steps' compiled symmetric eigensolver
(:func:`bayesmix.families.gaussian.constrained_kernels.descending_eigh`: cyclic Jacobi up to
``JACOBI_MAX_FEATURES`` features, LAPACK above) against ``numpy.linalg.eigh``."""

from __future__ import annotations

import numpy as np
import pytest

from bayesmix.families.gaussian import constrained_kernels
from bayesmix.families.gaussian.constrained_kernels import JACOBI_MAX_FEATURES, descending_eigh

SIZES = range(1, 11)
SCALES = (1e-8, 1.0, 1e8)


def _random_symmetric(rng, size, kind):
    if kind == "indefinite":
        values = rng.normal(size=size)
    elif kind == "positive":
        values = rng.uniform(0.05, 5.0, size)
    elif kind == "repeated":  # eigenvalues in two tied groups
        values = np.where(np.arange(size) < size // 2, 2.0, 0.5)
    else:  # rank one: every eigenvalue but one is zero
        values = np.zeros(size)
        values[0] = 3.0
    basis, _ = np.linalg.qr(rng.normal(size=(size, size)))
    matrix = basis @ np.diag(values) @ basis.T
    return 0.5 * (matrix + matrix.T)


def _check(matrix):
    values, vectors = descending_eigh(matrix)
    expected = np.linalg.eigh(matrix)[0][::-1]
    size = matrix.shape[0]
    norm = max(np.abs(expected).max(), np.finfo(float).tiny)
    tol = 50 * size * np.finfo(float).eps
    assert np.all(np.diff(values) <= 0.0), "eigenvalues not descending"
    np.testing.assert_allclose(values, expected, rtol=0.0, atol=tol * norm)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(size), rtol=0.0, atol=tol)
    rebuilt = vectors @ np.diag(values) @ vectors.T
    np.testing.assert_allclose(rebuilt, matrix, rtol=0.0, atol=tol * norm)
    return values, vectors


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["indefinite", "positive", "repeated", "rank_one"])
@pytest.mark.parametrize("scale", SCALES)
def test_matches_numpy_eigh(size, kind, scale):
    rng = np.random.default_rng(100 * size + len(kind))
    for _ in range(3):
        _check(scale * _random_symmetric(rng, size, kind))


@pytest.mark.parametrize("size", SIZES)
def test_separated_eigenvectors_match_numpy_up_to_sign(size):
    rng = np.random.default_rng(size)
    basis, _ = np.linalg.qr(rng.normal(size=(size, size)))
    values = 2.0 ** -np.arange(size)  # gaps of a factor 2
    matrix = basis @ np.diag(values) @ basis.T
    found, vectors = _check(0.5 * (matrix + matrix.T))
    expected = np.linalg.eigh(matrix)[1][:, ::-1]
    np.testing.assert_allclose(np.abs(vectors.T @ expected), np.eye(size), atol=1e-10)


@pytest.mark.parametrize("size", [1, 4, JACOBI_MAX_FEATURES + 1])
def test_diagonal_input_is_returned_sorted_with_unit_vectors(size):
    diagonal = np.linspace(-1.0, 3.0, size)[::-1].copy()
    np.random.default_rng(0).shuffle(diagonal)
    values, vectors = _check(np.diag(diagonal))
    np.testing.assert_array_equal(values, np.sort(diagonal)[::-1])
    np.testing.assert_array_equal(np.abs(vectors), np.eye(size)[:, np.argsort(-diagonal)])


def test_high_relative_accuracy_of_small_eigenvalues_of_a_graded_matrix():
    # eigenvalues 1, 1e-6, 1e-12 of a positive definite matrix: Jacobi gets each to a
    # few ulps of itself (Demmel & Veselic), as LAPACK does for this matrix
    rng = np.random.default_rng(3)
    basis, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    root = basis @ np.diag([1.0, 1e-3, 1e-6])
    matrix = root @ root.T
    values, _ = descending_eigh(0.5 * (matrix + matrix.T))
    np.testing.assert_allclose(values[:2], [1.0, 1e-6], rtol=1e-8)
    assert abs(values[2]) < 1e-11


@pytest.mark.parametrize("size", [3, JACOBI_MAX_FEATURES + 1])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_gives_nan(size, bad):
    matrix = np.eye(size)
    matrix[0, size - 1] = matrix[size - 1, 0] = bad
    values, vectors = descending_eigh(matrix)
    assert np.isnan(values).all() and np.isnan(vectors).all()


def test_only_the_symmetric_part_counts():
    rng = np.random.default_rng(7)
    for size in (2, 5, 9):
        matrix = rng.normal(size=(size, size))
        values, _ = descending_eigh(matrix)
        expected = np.linalg.eigvalsh(0.5 * (matrix + matrix.T))[::-1]
        np.testing.assert_allclose(values, expected, rtol=0.0, atol=1e-13 * size)


# -- the det-1 normalisation of the iterative models' start (VEE, EVE, VVE) -------------


def _normalised_reference(matrix: np.ndarray) -> np.ndarray:
    """``S / det(S)^(1/D)`` of the symmetric part ``S``, its eigenvalues floored at
    ``eps`` times the largest (numpy's eigh)."""
    values, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    values = np.maximum(values, max(np.finfo(float).eps * values.max(), 1e-300))
    values /= np.exp(np.log(values).mean())
    return (vectors * values) @ vectors.T


@pytest.mark.parametrize("size", [1, 2, 4, 7])
@pytest.mark.parametrize("condition", [1.0, 1e6, 1e12, 1e20])
def test_normalised_matches_the_floored_eigen_definition(size, condition):
    """Well-conditioned matrices take the Cholesky determinant, nearly singular ones
    (condition beyond 1/eps) the floored eigenvalues; both give the definition's matrix
    to the accuracy the condition number allows."""
    rng = np.random.default_rng(size)
    basis, _ = np.linalg.qr(rng.normal(size=(size, size)))
    spectrum = np.geomspace(1.0, 1.0 / condition, size) * 3.7e4
    matrix = (basis * spectrum) @ basis.T
    matrix[0, -1] += 1e-9 * spectrum[0]  # an asymmetric part, which must not count
    out = constrained_kernels._normalised(matrix)
    expected = _normalised_reference(matrix)
    # det(S) is known to about eps times the condition number, relative (either way)
    accuracy = min(1e-3, max(1e-9, 10 * np.finfo(float).eps * condition))
    np.testing.assert_allclose(out, expected, rtol=0.0, atol=accuracy * np.abs(expected).max())
    np.testing.assert_array_equal(out, out.T)
    if condition < 1e12:  # the floor is inactive: the determinant is 1
        assert np.linalg.det(out) == pytest.approx(1.0, rel=1e-9)


def test_normalised_of_a_singular_or_nan_matrix_takes_the_floor_path():
    singular = np.outer([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(
        constrained_kernels._normalised(singular), _normalised_reference(singular), atol=1e-6
    )
    assert np.isnan(constrained_kernels._normalised(np.full((3, 3), np.nan))).all()
