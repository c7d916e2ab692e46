"""EM against R's mclust 6.0.0 where the optimum is not in doubt.

The references in ``tests/data/mclust/`` were made by ``make_references.R`` (mclust's
hierarchical start, tolerances 1e-10; see its README); R is not needed here. This file
checks the cells where every start finds one optimum: a single component, and two
components on iris and Old Faithful. The cells where bayesmix stops short of mclust or
finds a spurious maximiser are issue 15's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

import bayesmix as bm

REFERENCES = Path(__file__).parent / "data" / "mclust"
DATA = {
    "iris": lambda: load_iris(as_frame=True).data,
    "faithful": bm.datasets.load_faithful,
}


def _reference(data: str, covariance_type: str, n_components: int) -> pd.Series:
    """mclust's fit of one cell: ``loglik``, ``bic_mclust``, ``n_parameters``, ..."""
    table = pd.read_csv(REFERENCES / f"{data}.csv")
    row = table[(table["bayesmix_covariance"] == covariance_type) & (table["G"] == n_components)]
    assert len(row) == 1, (data, covariance_type, n_components)
    return row.iloc[0]


@pytest.mark.parametrize("n_components", [1, 2])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("data", sorted(DATA))
def test_em_reaches_mclust_optimum(data, covariance_type, n_components):
    X = DATA[data]()
    fit = bm.GaussianMixture(n_components, covariance_type).fit(
        X, n_init=5, random_state=0, tol=1e-10, max_iter=5000
    )
    mclust = _reference(data, covariance_type, n_components)
    # both sides converged to 1e-10 per observation; the optimum itself agrees to ~1e-9
    np.testing.assert_allclose(fit.log_likelihood, mclust["loglik"], rtol=1e-7)
    # mclust's BIC is -bayesmix's (same parameter count, same log n)
    assert int(mclust["n_parameters"]) == fit.n_parameters
    np.testing.assert_allclose(-fit.bic(), mclust["bic_mclust"], rtol=1e-7)
