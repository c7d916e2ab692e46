"""The Gaussian family's declaration: ``Gaussian(covariance_type)``.

``bm.Mixture(K, Gaussian(covariance_type), priors)`` is ``bm.GaussianMixture(K,
covariance_type, priors)``; the Gaussian math lives with the covariance structures
(:mod:`bayesmix.families.gaussian.covariance`) and the EM kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

from bayesmix.families.gaussian.covariance import get_structure

__all__ = ["Gaussian"]


@dataclass(frozen=True)
class Gaussian:
    """Gaussian components with one of the covariance structures ``"full"``, ``"tied"``,
    ``"diag"``, ``"spherical"`` (see :class:`bayesmix.GaussianMixture`)."""

    covariance_type: str = "full"

    def __post_init__(self) -> None:
        object.__setattr__(self, "covariance_type", get_structure(self.covariance_type).name)

    name = "gaussian"
