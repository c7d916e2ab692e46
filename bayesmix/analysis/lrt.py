"""mclust's bootstrap likelihood-ratio test for the number of components.

:func:`bootstrap_lrt` is R mclust's ``mclustBootstrapLRT`` (McLachlan 1987; McLachlan &
Rathnayake 2014): for ``K = 1, 2, ...`` it tests ``K`` against ``K + 1`` components of one
Gaussian covariance model. The likelihood-ratio statistic ``LRTS = 2 (log L_{K+1} -
log L_K)`` has no chi-squared reference distribution here (the null lies on the boundary
of the alternative), so its distribution under the null is simulated by a parametric
bootstrap: samples of ``n`` observations drawn from the fitted ``K``-component mixture,
each refitted with ``K`` and ``K + 1`` components.
"""

from __future__ import annotations

import html
import numbers
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesmix.data import as_data
from bayesmix.families.gaussian.covariance import get_structure
from bayesmix.inference.interrupt import nested_fits
from bayesmix.model import GaussianMixture
from bayesmix.results import MixtureResult
from bayesmix.validation import check_float, check_int, check_random_state

if TYPE_CHECKING:
    import matplotlib.axes

__all__ = ["bootstrap_lrt", "BootstrapLRTResult"]

# Refit failures (an error, a non-finite or spurious fit) tolerated per test, as a multiple
# of n_bootstrap, before the test gives up: mclust redraws without a limit.
_MAX_FAILURES = 1.0
# EM tolerance of the bootstrap refits (mclust's em uses a relative 1e-5): about 0.003 in
# the log-likelihood of Old Faithful, far below the bootstrap spread, at half the
# iterations of the default 1e-8.
REFIT_TOL = 1e-5
_FIT_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError, RuntimeError)


def bootstrap_lrt(
    X: Any,
    covariance_type: str = "full",
    max_components: int = 9,
    n_bootstrap: int = 999,
    level: float = 0.05,
    random_state: Any = None,
    *,
    sequential: bool = True,
    n_init: int = 5,
    bootstrap_starts: int = 1,
) -> BootstrapLRTResult:
    """Sequential bootstrap likelihood-ratio tests of K against K + 1 components.

    R mclust's ``mclustBootstrapLRT``. For ``K = 1, 2, ..., max_components - 1``:

    1. the observed statistic ``LRTS_K = 2 (log L_{K+1} - log L_K)`` from EM fits of
       ``X`` with ``K`` and ``K + 1`` components (``n_init`` starts each: the
       hierarchical start, mclust's, and k-means++ starts);
    2. ``n_bootstrap`` times: ``n`` observations simulated from the fitted
       ``K``-component mixture, refitted with ``K`` components from the fitted
       ``K``-component parameters and with ``K + 1`` components from the fitted
       ``(K + 1)``-component parameters (mclust's starts), giving a bootstrap
       statistic (refits to EM tolerance ``REFIT_TOL = 1e-5``, mclust's order); a
       refit that fails or ends on a spurious maximum is retried from two
       k-means++ starts, and a replicate without a sound refit is redrawn (mclust
       redraws a replicate whose EM fails);
    3. the p-value ``(1 + #{bootstrap LRTS >= LRTS_K}) / (n_bootstrap + 1)``;
    4. with ``sequential=True`` the tests stop at the first p-value above ``level``.

    Parameters
    ----------
    X : array-like of shape (n_obs, n_features), DataFrame or DataArray
        Observations (numeric, without missing values).
    covariance_type : str
        One Gaussian covariance model: ``"full"``, ``"tied"``, ``"diag"``,
        ``"spherical"`` or any of mclust's 14 names (``"VVV"``, ``"VEV"``, ...).
    max_components : int
        The largest number of components fitted (the alternative of the last test),
        between 2 and ``n_obs``; default 9, mclust's.
    n_bootstrap : int
        Bootstrap samples per test (mclust's ``nboot``), default 999; 99 is enough
        to see whether a p-value is far from ``level``.
    level : float
        Significance level in (0, 1), default 0.05.
    random_state : int, numpy.random.Generator or None
        Seeds the fits and the simulated samples.
    sequential : bool
        Stop at the first test that is not significant (default, mclust's without
        ``maxG``); ``False`` runs every test up to ``max_components`` (mclust with
        ``maxG``).
    n_init : int
        EM starts of the fits of ``X`` (default 5, as :func:`select_components`).
    bootstrap_starts : int
        EM starts of each bootstrap refit: 1 (default) is mclust's single start from
        the fitted parameters; more add k-means++ starts, the best sound fit kept, at
        about that many times the cost.

    Returns
    -------
    BootstrapLRTResult
        ``.observed``, ``.bootstrap``, ``.p_values``, ``.n_components`` (the chosen
        K), ``.table``, ``.plot()``.

    Notes
    -----
    The chosen K is the null of the first test that is not significant; when every
    test is, it is ``max_components`` (and the result says so: more components may be
    needed). Each bootstrap replicate costs two EM fits started at the fitted
    parameters, which converge in few iterations: Old Faithful (n = 272), ``"full"``,
    three tests with ``n_bootstrap=99`` take a few seconds.

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_faithful()
    >>> lrt = bm.bootstrap_lrt(X, "VVV", max_components=4, n_bootstrap=19, random_state=0)
    >>> int(lrt.p_values[1] <= 0.05)  # 1 vs 2 components: significant
    1
    """
    data = as_data(X)
    structure = get_structure(covariance_type)
    max_components = check_int(max_components, "max_components", minimum=2)
    if max_components > data.n_obs:
        raise ValueError(
            f"max_components={max_components} is more than the {data.n_obs} observations "
            "of X; use at most n_obs components."
        )
    n_bootstrap = check_int(n_bootstrap, "n_bootstrap")
    if isinstance(level, bool) or not isinstance(level, numbers.Real):
        raise TypeError(f"level must be a real number in (0, 1); got {level!r}.")
    level = check_float(level, "level", inclusive=False)
    if level >= 1.0:
        raise ValueError(f"level must be in (0, 1), e.g. 0.05; got {level}.")
    if not isinstance(sequential, (bool, np.bool_)):
        raise TypeError(f"sequential must be True or False; got {sequential!r}.")
    n_init = check_int(n_init, "n_init")
    bootstrap_starts = check_int(bootstrap_starts, "bootstrap_starts")
    rng = check_random_state(random_state)

    values = data.values
    fits: dict[int, MixtureResult] = {}

    def fitted(k: int) -> MixtureResult:
        if k not in fits:
            model = GaussianMixture(k, structure.name)
            with nested_fits():  # Ctrl-C stops the whole test, not one fit
                fit = model.fit(data, method="em", n_init=n_init, random_state=_seed(rng))
            if fit.spurious or not np.isfinite(fit.log_likelihood):
                raise ValueError(
                    f"the {k}-component {structure.mclust_name} fit of X ended on a spurious "
                    f"maximum in every start ({'; '.join(fit.spurious)}); test fewer "
                    f"components (max_components={k - 1}) or another covariance_type."
                )
            fits[k] = fit
        return fits[k]

    observed, p_values, boots, failures = {}, {}, {}, {}
    for k in range(1, max_components):
        null, alternative = fitted(k), fitted(k + 1)
        statistic = 2.0 * (alternative.log_likelihood - null.log_likelihood)
        boot, failed = _bootstrap(
            values, null, alternative, n_bootstrap, bootstrap_starts, rng, structure.name
        )
        observed[k] = statistic
        boots[k] = boot
        failures[k] = failed
        valid = boot[np.isfinite(boot)]
        p_values[k] = (1.0 + np.sum(valid >= statistic)) / (valid.size + 1.0)
        if sequential and p_values[k] > level:
            break
    tests = pd.Index(list(observed), name="n_components")
    return BootstrapLRTResult(
        model=structure.mclust_name,
        covariance_type=covariance_type,
        observed=pd.Series(observed, index=tests, name="LRTS", dtype=float),
        bootstrap=pd.DataFrame(boots, columns=tests).rename_axis(index="replicate"),
        p_values=pd.Series(p_values, index=tests, name="p_value", dtype=float),
        n_failed=pd.Series(failures, index=tests, name="n_failed", dtype=int),
        log_likelihoods=pd.Series(
            {k: fit.log_likelihood for k, fit in sorted(fits.items())},
            name="log_likelihood",
            dtype=float,
        ).rename_axis("n_components"),
        fits=dict(sorted(fits.items())),
        level=level,
        max_components=max_components,
        n_obs=data.n_obs,
    )


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def _simulate(fit: MixtureResult, n_obs: int, rng: np.random.Generator) -> np.ndarray:
    """``n_obs`` draws from the fitted mixture (components, then Gaussian draws through
    the Cholesky factors of the component covariances)."""
    weights = np.asarray(fit.weights, dtype=float)
    means = np.asarray(fit.means, dtype=float)
    factors = np.linalg.cholesky(np.asarray(fit.covariances, dtype=float))
    labels = rng.choice(weights.size, size=n_obs, p=weights / weights.sum())
    noise = rng.standard_normal((n_obs, means.shape[1]))
    return means[labels] + np.einsum("nij,nj->ni", factors[labels], noise)


def _start(fit: MixtureResult) -> dict[str, np.ndarray]:
    return {
        "weights": np.asarray(fit.weights, dtype=float),
        "means": np.asarray(fit.means, dtype=float),
        "covariances": np.asarray(fit.covariances, dtype=float),
    }


def _refit(sample, k, start, starts, rng, covariance_type) -> float:
    """The log-likelihood of the best sound refit (not failed, not spurious): from
    ``start`` and ``starts - 1`` more k-means++ starts; when the start from ``start`` is
    not sound and no more were asked for, from two k-means++ starts. NaN when none is
    sound."""
    model = GaussianMixture(k, covariance_type)

    def sound(options) -> float:
        try:
            with nested_fits():  # Ctrl-C stops the bootstrap, not one refit
                fit = model.fit(sample, method="em", tol=REFIT_TOL, **options)
        except _FIT_ERRORS:
            return -np.inf
        if fit.spurious or not np.isfinite(fit.log_likelihood):
            return -np.inf
        return float(fit.log_likelihood)

    best = sound({"init": start})
    if starts > 1 or not np.isfinite(best):
        more = max(starts - 1, 2)
        # k-means++ starts: a hierarchical start would build a tree for every sample
        options = {"n_init": more, "init": "kmeans++", "random_state": _seed(rng)}
        best = max(best, sound(options))
    return best if np.isfinite(best) else np.nan


def _bootstrap(values, null, alternative, n_bootstrap, starts, rng, covariance_type):
    """``n_bootstrap`` bootstrap statistics of the test of ``null`` against
    ``alternative`` (failed replicates redrawn) and the number redrawn."""
    k = null.model.n_components
    start_null, start_alternative = _start(null), _start(alternative)
    boot = np.full(n_bootstrap, np.nan)
    done = failed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # refits' convergence notes: the statistic counts
        while done < n_bootstrap and failed <= _MAX_FAILURES * n_bootstrap:
            sample = _simulate(null, values.shape[0], rng)
            low = _refit(sample, k, start_null, starts, rng, covariance_type)
            high = _refit(sample, k + 1, start_alternative, starts, rng, covariance_type)
            statistic = 2.0 * (high - low)
            if not np.isfinite(statistic):
                failed += 1
                continue
            boot[done] = statistic
            done += 1
    if done < n_bootstrap:
        warnings.warn(
            f"bootstrap_lrt: {failed} refits of the {k} vs {k + 1} test failed or ended on "
            f"spurious maxima; the p-value uses the {done} bootstrap statistics obtained.",
            RuntimeWarning,
            stacklevel=3,
        )
    return boot, failed


class BootstrapLRTResult:
    """The outcome of :func:`bootstrap_lrt` (mclust's ``mclustBootstrapLRT`` object).

    Attributes
    ----------
    model : str
        mclust's name of the covariance model tested.
    covariance_type : str
        The name it was given by.
    observed : pandas.Series
        The observed statistic ``2 (log L_{K+1} - log L_K)`` of each test, indexed by
        the null's K (``n_components``).
    bootstrap : pandas.DataFrame
        The bootstrap statistics, one column per test, one row per replicate.
    p_values : pandas.Series
        ``(1 + #{bootstrap >= observed}) / (n_bootstrap + 1)`` per test.
    n_failed : pandas.Series
        Replicates redrawn per test (a refit failed or was spurious).
    log_likelihoods : pandas.Series
        The log-likelihood of each fit of ``X`` by its K.
    fits : dict
        Those fits (:class:`~bayesmix.results.EMResult`) by K.
    level : float
    max_components : int
    n_obs : int
    """

    def __init__(
        self,
        *,
        model: str,
        covariance_type: str,
        observed: pd.Series,
        bootstrap: pd.DataFrame,
        p_values: pd.Series,
        n_failed: pd.Series,
        log_likelihoods: pd.Series,
        fits: dict[int, MixtureResult],
        level: float,
        max_components: int,
        n_obs: int,
    ) -> None:
        self.model = model
        self.covariance_type = covariance_type
        self.observed = observed
        self.bootstrap = bootstrap
        self.p_values = p_values
        self.n_failed = n_failed
        self.log_likelihoods = log_likelihoods
        self.fits = fits
        self.level = level
        self.max_components = max_components
        self.n_obs = n_obs

    @property
    def n_bootstrap(self) -> int:
        """Bootstrap replicates per test (mclust's ``Replications``)."""
        return int(self.bootstrap.shape[0])

    @property
    def n_components(self) -> int:
        """The chosen K: the null of the first test with a p-value above ``level``, or
        ``max_components`` when every test was significant."""
        above = self.p_values[self.p_values > self.level]
        if above.empty:
            return int(self.observed.index[-1]) + 1
        return int(above.index[0])

    @property
    def table(self) -> pd.DataFrame:
        """mclust's printed table: ``LRTS`` and ``bootstrap p-value`` per test, rows
        ``"1 vs 2"``, ...; plus whether the test is significant at ``level``."""
        index = pd.Index([f"{k} vs {k + 1}" for k in self.observed.index], name="test")
        return pd.DataFrame(
            {
                "LRTS": self.observed.to_numpy(),
                "bootstrap p-value": self.p_values.to_numpy(),
                "significant": (self.p_values <= self.level).to_numpy(),
            },
            index=index,
        )

    def plot(self, n_components: int | None = None, ax: matplotlib.axes.Axes | None = None) -> Any:
        """Histograms of the bootstrap statistics with the observed one; see
        :func:`bayesmix.viz.plot_bootstrap_lrt`."""
        from bayesmix.viz.selection import plot_bootstrap_lrt

        return plot_bootstrap_lrt(self, n_components, ax=ax)

    def _conclusion(self) -> str:
        k = self.n_components
        if (self.p_values <= self.level).all():
            last = int(self.observed.index[-1])
            return (
                f"Every test is significant at level {self.level:g}: at least K = {k} "
                f"components (the last test was {last} vs {last + 1}; raise max_components "
                "to test further)."
            )
        return f"Chosen: K = {k} ({k} vs {k + 1} is the first test with p-value > {self.level:g})."

    def _lines(self) -> list[str]:
        rule = "-" * 61
        return [
            rule,
            "Bootstrap sequential LRT for the number of mixture components",
            rule,
            f"{'Model':<12} = {self.model}",
            f"{'Replications':<12} = {self.n_bootstrap}",
        ]

    def __repr__(self) -> str:
        table = self.table.drop(columns="significant")
        text = table.to_string(
            formatters={"LRTS": "{:.4f}".format, "bootstrap p-value": "{:.4g}".format}
        )
        lines = [*self._lines(), text, "", self._conclusion()]
        if self.n_failed.any():
            lines.append(
                "Redrawn replicates (refit failed or spurious): "
                + ", ".join(f"{k} vs {k + 1}: {n}" for k, n in self.n_failed.items() if n)
                + "."
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(
            f"{html.escape(line)}<br>" for line in self._lines()[1:2] + self._lines()[3:]
        )
        table = self.table.to_html(
            formatters={"LRTS": "{:.4f}".format, "bootstrap p-value": "{:.4g}".format}
        )
        return f"<div><p>{head}</p>{table}<p>{html.escape(self._conclusion())}</p></div>"
