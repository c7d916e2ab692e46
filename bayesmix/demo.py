"""The showcase run by ``make demo``: EM on the shipped Old Faithful data."""

from __future__ import annotations

import bayesmix as bm


def main() -> None:
    """Fit Old Faithful by EM for K = 1..4, print the BIC table and the best fit."""
    X = bm.datasets.load_faithful()
    print(f"Old Faithful: {X.shape[0]} eruptions, features {list(X.columns)}\n")
    fits = {
        k: bm.GaussianMixture(k, covariance_type="full").fit(X, n_init=5, random_state=0)
        for k in range(1, 5)
    }
    print("Choosing K by BIC (lower is better):")
    for k, fit in fits.items():
        print(
            f"  K={k}: log-likelihood {fit.log_likelihood:9.2f}  BIC {fit.bic():8.2f}"
            f"  ICL {fit.icl():8.2f}"
        )
    best = min(fits, key=lambda k: fits[k].bic())
    print(f"\nBest by BIC: K={best}\n")
    print(fits[best])


if __name__ == "__main__":
    main()
