"""Component families: the distribution of one mixture component.

``bm.Mixture(K, family)`` declares a mixture of any of them:

* :class:`Gaussian` — continuous data, any covariance structure (the same declaration
  as :class:`bayesmix.GaussianMixture`);
* :class:`Poisson` — counts, one rate per component and column;
* :class:`NegativeBinomial` — overdispersed counts, one mean and one dispersion per
  component and column;
* :class:`StudentT` — continuous data with heavy tails (robust clustering: outlying rows
  sit in a component's tails instead of pulling its location);
* :class:`Bernoulli` — binary items (latent class analysis), one probability per
  component and column;
* :class:`Categorical` — nominal items, each column its own set of category codes,
  one probability per component, column and category;
* :class:`Normal` — continuous data, features independent given the component (latent
  profiles), one mean and one variance per component and column;
* :class:`Independent` — mixed-type data: a product of the families above over
  disjoint groups of columns (a ``Gaussian(covariance_type)`` block keeps its columns'
  correlations).

Non-Gaussian families implement :class:`ComponentFamily`, the one interface through
which backends and analyses use their math.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bayesmix.families.base import ComponentFamily
    from bayesmix.families.bernoulli import Bernoulli
    from bayesmix.families.categorical import Categorical
    from bayesmix.families.gaussian import Gaussian
    from bayesmix.families.independent import Independent
    from bayesmix.families.negative_binomial import NegativeBinomial
    from bayesmix.families.normal import Normal
    from bayesmix.families.poisson import Poisson
    from bayesmix.families.student_t import StudentT

#: public name -> the module that defines it; imported on first use, so that importing one
#: family (the Gaussian one on the EM path) does not import the others and their kernels
_ATTRIBUTES: dict[str, str] = {
    "Bernoulli": "bayesmix.families.bernoulli",
    "Categorical": "bayesmix.families.categorical",
    "ComponentFamily": "bayesmix.families.base",
    "Gaussian": "bayesmix.families.gaussian",
    "Independent": "bayesmix.families.independent",
    "NegativeBinomial": "bayesmix.families.negative_binomial",
    "Normal": "bayesmix.families.normal",
    "Poisson": "bayesmix.families.poisson",
    "StudentT": "bayesmix.families.student_t",
}

__all__ = [
    "Bernoulli",
    "Categorical",
    "ComponentFamily",
    "FAMILIES",
    "Gaussian",
    "Independent",
    "NegativeBinomial",
    "Normal",
    "Poisson",
    "StudentT",
]


def _families() -> dict[str, type[ComponentFamily]]:
    """The non-Gaussian families by their ``name`` (saved files and the CLI name them so)."""
    return {
        family.name: family
        for family in (
            __getattr__(name)
            for name in (
                "Poisson",
                "NegativeBinomial",
                "StudentT",
                "Bernoulli",
                "Categorical",
                "Normal",
                "Independent",
            )
        )
    }


def __getattr__(name: str) -> Any:
    """Import a family's module on the first use of its name (PEP 562).

    ``FAMILIES``, the non-Gaussian families by their ``name`` (saved files and the CLI name
    them so), imports all of them.

    Parameters
    ----------
    name : str
        A name of ``__all__``.

    Returns
    -------
    object
        The family class, :class:`ComponentFamily` or ``FAMILIES``.

    Raises
    ------
    AttributeError
        If the name is not one of the package's public names.
    """
    if name in _ATTRIBUTES:
        value = getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    elif name == "FAMILIES":
        value = _families()
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The package's names with every public name, loaded or not (tab completion).

    Returns
    -------
    list of str
    """
    return sorted({*globals(), *__all__})
