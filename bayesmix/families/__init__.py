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

from bayesmix.families.base import ComponentFamily
from bayesmix.families.bernoulli import Bernoulli
from bayesmix.families.categorical import Categorical
from bayesmix.families.gaussian import Gaussian
from bayesmix.families.independent import Independent
from bayesmix.families.negative_binomial import NegativeBinomial
from bayesmix.families.normal import Normal
from bayesmix.families.poisson import Poisson
from bayesmix.families.student_t import StudentT

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

#: the non-Gaussian families by their ``name`` (saved files and the CLI name them so)
FAMILIES: dict[str, type[ComponentFamily]] = {
    family.name: family
    for family in (Poisson, NegativeBinomial, StudentT, Bernoulli, Categorical, Normal, Independent)
}
