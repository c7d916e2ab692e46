"""The result interface shared by every inference backend.

A result holds its parameters as an :class:`xarray.Dataset` with sample dims
``(chain, draw)`` (an EM point estimate is ``chain=1, draw=1``). Everything downstream —
memberships, predictive densities, sampling, the DataTree — is written once against it.
"""

from __future__ import annotations

import importlib
import os
import platform
from collections.abc import Callable
from functools import cache, cached_property, partial
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from bayesmix.data import Data, as_dask_data, as_data, check_sample_weight, is_dask_input
from bayesmix.families.gaussian.covariance import get_structure
from bayesmix.families.gaussian.stats import (
    BLOCK_BYTES,
    Params,
    iter_blocks,
    log_normalise,
)
from bayesmix.validation import check_int, check_random_state

if TYPE_CHECKING:
    # xarray and pandas are imported where a Dataset or DataFrame is built: an EM fit on
    # numpy data and its predictions never build one, so they never import them (nor the
    # Dask that xarray's first Dataset imports when it is installed)
    import pandas as pd
    import xarray as xr

    from bayesmix.model import GaussianMixture
    from bayesmix.priors import ResolvedPriors

__all__ = [
    "MixtureResult",
    "EMResult",
    "parameters_dataset",
    "identified_parameters",
    "parameter_draws",
    "sample_mixture",
    "require_gaussian",
]


def parameters_dataset(
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    feature_names: tuple[str, ...],
) -> xr.Dataset:
    """Parameters with dims ``(chain, draw, component, feature, feature_)``.

    Parameters
    ----------
    weights : array of shape (chain, draw, K)
    means : array of shape (chain, draw, K, D)
    covariances : array of shape (chain, draw, K, D, D)
    feature_names : tuple of str

    Returns
    -------
    xarray.Dataset
        ``weights``, ``means``, ``covariances`` and the derived per-component standard
        deviations ``stds`` and correlation matrices ``correlations``.
    """
    import xarray as xr

    stds = np.sqrt(np.diagonal(covariances, axis1=-2, axis2=-1))
    outer = stds[..., :, None] * stds[..., None, :]
    correlations = np.divide(covariances, outer, out=np.zeros_like(covariances), where=outer > 0)
    n_chains, n_draws, n_components = weights.shape
    coords = {
        "chain": np.arange(n_chains),
        "draw": np.arange(n_draws),
        "component": np.arange(n_components),
        "feature": list(feature_names),
        "feature_": list(feature_names),
    }
    sample = ("chain", "draw", "component")
    return xr.Dataset(
        {
            "weights": (sample, weights),
            "means": (sample + ("feature",), means),
            "covariances": (sample + ("feature", "feature_"), covariances),
            "stds": (sample + ("feature",), stds),
            "correlations": (sample + ("feature", "feature_"), correlations),
        },
        coords=coords,
    )


def identified_parameters(posterior: xr.Dataset, covariance_type: str) -> xr.Dataset:
    """The free parameters of a structure, without redundant or fixed entries.

    ``weights``, ``means``, ``stds`` (one per component for ``spherical``, one per
    feature for ``tied``) and, for ``full`` and ``tied`` with two or more features, the
    off-diagonal ``correlations`` over a ``pair`` dim labelled ``"a, b"``. The diagonal
    of a correlation matrix (always 1) and the zeros ``diag`` and ``spherical`` fix are
    left out: they are not parameters, and ArviZ cannot draw constant variables.

    Parameters
    ----------
    posterior : xarray.Dataset
        Output of :func:`parameters_dataset`.
    covariance_type : str

    Returns
    -------
    xarray.Dataset
        The labels :func:`arviz.summary` gives its rows (``means[0, waiting]``,
        ``correlations[0, eruptions, waiting]``) are the ones every bayesmix table uses.
    """
    import xarray as xr

    structure = get_structure(covariance_type)
    # a dim the structure does not store holds copies: keep its first entry only
    repeated = [dim for dim in ("component", "feature") if dim not in structure.natural_dims]
    stds = posterior["stds"].isel({dim: 0 for dim in repeated}, drop=True)
    keep = {"weights": posterior["weights"], "means": posterior["means"], "stds": stds}
    features = [str(name) for name in posterior["feature"].values]
    if not structure.axis_aligned and len(features) > 1:
        rows, cols = np.triu_indices(len(features), 1)
        pairs = [f"{features[i]}, {features[j]}" for i, j in zip(rows, cols, strict=True)]
        corr = posterior["correlations"].values[..., rows, cols]
        dims = ("chain", "draw", "component", "pair")
        if structure.shared_across_components:
            corr, dims = corr[:, :, 0], ("chain", "draw", "pair")
        keep["correlations"] = xr.DataArray(corr, dims=dims, coords={"pair": pairs})
    return xr.Dataset(keep)


def parameter_draws(identified: xr.Dataset) -> tuple[list[str], np.ndarray]:
    """Identified parameters (dims ``(chain, draw, ...)``, e.g. the output of
    :func:`identified_parameters`) as scalar columns.

    Returns
    -------
    labels : list of str
        One per parameter, as :func:`arviz.summary` labels its rows
        (``"means[0, waiting]"``).
    draws : numpy.ndarray of shape (chain, draw, n_parameters)
    """
    labels, columns = [], []
    for name, values in identified.data_vars.items():
        dims = values.dims[2:]
        for index in np.ndindex(values.shape[2:]):
            coords = [str(values[dim].values[i]) for dim, i in zip(dims, index, strict=True)]
            labels.append(f"{name}[{', '.join(coords)}]" if coords else name)
            columns.append(values.values[(..., *index)])
    return labels, np.stack(columns, axis=-1)


def sample_mixture(
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    n_samples: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``(X, z)`` from mixtures given per draw: weights ``(S, K)``, means
    ``(S, K, D)``, full covariances ``(S, K, D, D)``; each sample picks a draw uniformly."""
    n_draws, n_components, n_features = means.shape
    chol = np.linalg.cholesky(covariances)
    draw = rng.integers(n_draws, size=n_samples)
    cumulative = np.cumsum(weights, axis=1)
    cumulative /= cumulative[:, -1:]
    u = rng.uniform(size=n_samples)
    z = np.minimum((u[:, None] > cumulative[draw]).sum(axis=1), n_components - 1)
    eps = rng.standard_normal((n_samples, n_features))
    X = np.empty((n_samples, n_features))
    rows_per_block = max(1, BLOCK_BYTES // (8 * n_features * n_features))  # gathered factors
    for rows in iter_blocks(n_samples, rows_per_block):
        factors = chol[draw[rows], z[rows]]
        X[rows] = means[draw[rows], z[rows]] + np.einsum("nde,ne->nd", factors, eps[rows])
    return X, z


def require_gaussian(result: MixtureResult, what: str) -> None:
    """Raise ``ValueError`` when ``result`` is not of a Gaussian mixture (analyses not
    yet written for other component families)."""
    if "covariances" not in result.posterior:
        family = result.model.declaration_attrs().get("family", "non-Gaussian")
        raise ValueError(
            f"{what}: available for Gaussian mixtures only so far; this result is of the "
            f"{family} family. Its own methods work (predict_proba, score_samples, sample, "
            "summary, to_datatree), as do bm.memberships, bm.point_partition, "
            "bm.co_clustering, bm.density and bm.anomaly_scores."
        )


def package_versions() -> dict[str, str]:
    """Versions of bayesmix and the libraries that determine its numbers (read from the
    installed distributions, so nothing heavy is imported; a fresh dict per call)."""
    return dict(_installed_versions())


@cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    # Read once per process: reading 7 distributions' metadata takes ~45 ms, as long as
    # ten EM iterations on 100,000 x 16 rows.
    versions = [("python", platform.python_version())]
    for name in ("bayesmix", "numpy", "scipy", "pymc", "pytensor", "arviz", "nutpie"):
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            versions.append((name, "not installed"))
    return tuple(versions)


def _predict_block(x, result, kind):
    return getattr(result, kind)(np.ascontiguousarray(x, dtype=np.float64))


def lazy_prediction(result: MixtureResult, X: Any, kind: str) -> Any:
    """``result.<kind>(X)`` for Dask input as a lazy Dask array, chunked like ``X``'s rows.

    Parameters
    ----------
    result : MixtureResult
    X : Dask input (see :func:`bayesmix.data.as_dask_data`)
    kind : {"predict_proba", "predict", "score_samples"}

    Returns
    -------
    dask.array.Array
        ``(n_obs, K)`` float for ``predict_proba``, ``(n_obs,)`` int for ``predict``,
        ``(n_obs,)`` float for ``score_samples``; nothing is computed until
        ``.compute()``. Each chunk is validated when it is computed.
    """
    if kind not in ("predict_proba", "predict", "score_samples"):
        raise ValueError(
            f"kind must be 'predict_proba', 'predict' or 'score_samples'; got {kind!r}."
        )
    data = as_dask_data(
        X, n_features=result.n_features, categories=getattr(result.model, "categories", None)
    )
    func = partial(_predict_block, result=result, kind=kind)
    if kind == "predict_proba":
        return data.array.map_blocks(
            func,
            dtype=np.float64,
            chunks=(data.array.chunks[0], (result.model.n_components,)),
            meta=np.empty((0, 0)),
        )
    dtype = np.intp if kind == "predict" else np.float64
    return data.array.map_blocks(
        func, dtype=dtype, drop_axis=1, chunks=(data.array.chunks[0],), meta=np.empty(0, dtype)
    )


# The function MixtureResult.save writes with. bayesmix.results.io registers its ``save`` on import:
# io reads and writes results, so it sits above this module, which therefore does not import it
# by an import statement. ``import bayesmix`` no longer imports io (its names load on first use),
# so save() loads it by name the first time (WRITER_MODULE) when nothing has registered yet.
WRITER_MODULE = "bayesmix.results.io"
_WRITER: Callable[[MixtureResult, str | os.PathLike], None] | None = None


def register_writer(writer: Callable[[MixtureResult, str | os.PathLike], None]) -> None:
    """Set the function :meth:`MixtureResult.save` calls.

    Parameters
    ----------
    writer : callable
        ``writer(result, path)`` writes ``result`` to ``path``; :mod:`bayesmix.results.io`
        registers :func:`bayesmix.results.io.save` when it is imported.
    """
    global _WRITER
    _WRITER = writer


class MixtureResult:
    """A fitted mixture: parameters per posterior draw and the methods built on them.

    Parameters
    ----------
    model : GaussianMixture
        The declaration that was fitted.
    posterior : xarray.Dataset
        Output of :func:`parameters_dataset`.
    settings : dict
        Fit settings (method, seeds, timings), recorded as DataTree attributes.
    """

    def __init__(
        self,
        model: GaussianMixture,
        posterior: xr.Dataset | Callable[[], xr.Dataset],
        settings: dict,
    ) -> None:
        self.model = model
        self._posterior = posterior
        self.settings = dict(settings)
        self.settings.setdefault("versions", package_versions())

    @property
    def posterior(self) -> xr.Dataset:
        """The parameters per draw (``chain``, ``draw``, ``component``, ...). An EM
        estimate builds it on first use: :func:`~bayesmix.select_components` fits many
        models whose tables read only their log-likelihoods."""
        if callable(self._posterior):
            self._posterior = self._posterior()
        return self._posterior

    @posterior.setter
    def posterior(self, value: xr.Dataset) -> None:
        self._posterior = value

    def save(self, path: str | os.PathLike) -> None:
        """Write the result to a netCDF file that :func:`bayesmix.load` reads back exactly.

        Parameters
        ----------
        path : str or path-like
            The file to write (conventionally ``.nc``); it is overwritten.
        """
        if _WRITER is None:
            importlib.import_module(WRITER_MODULE)  # registers its writer
        if _WRITER is None:  # pragma: no cover - bayesmix.results.io registers on import
            raise RuntimeError(f"no result writer is registered; import {WRITER_MODULE} first.")
        _WRITER(self, path)

    # -- parameters per draw -------------------------------------------------------
    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(str(f) for f in self.posterior["feature"].values)

    @property
    def n_features(self) -> int:
        return self.posterior.sizes["feature"]

    @property
    def n_draws(self) -> int:
        return self.posterior.sizes["chain"] * self.posterior.sizes["draw"]

    @cached_property
    def _draw_params(self) -> list:
        """Parameters of every draw, chains flattened, in the form the declaration's
        :meth:`log_joint` takes."""
        return self.model.draw_parameters(self.posterior)

    def _log_joint(self, data: Data, params: Any) -> np.ndarray:
        """``log w_k + log p(x_n | theta_k)`` ``(n_obs, K)`` for one draw of validated
        ``data`` (its cached facts spare a scan per draw)."""
        return self.model.log_joint(data, params)

    def check_data(self, X: Any, name: str = "X") -> Data:
        """``X`` checked against the fit, as every method and analysis of the result
        takes it.

        Parameters
        ----------
        X : array-like, DataFrame or DataArray
            Observations with the fitted number of features.
        name : str
            The argument's name in error messages.

        Returns
        -------
        Data
            The number of features checked, NaN accepted when the fit marginalised
            missing values (``missing="marginalize"``), values inside the family's
            support (counts for count families), a DataFrame's category, text and
            boolean columns coded with the fitted labels (``model.categories``).
        """
        data = as_data(
            X,
            name=name,
            n_features=self.n_features,
            allow_missing=self._allows_missing,
            categories=getattr(self.model, "categories", None),
        )
        self.model.check_values(data.values, data.feature_names, name)
        return data

    @property
    def _allows_missing(self) -> bool:
        """Whether NaN in prediction data is marginalised (fitted with
        ``missing="marginalize"``) rather than rejected."""
        return self.settings.get("missing") == "marginalize"

    # -- the shared interface --------------------------------------------------------
    def membership_draws(self, X: Any) -> xr.DataArray:
        """Membership probabilities ``p(z_n = k | x_n, theta)`` for every draw.

        Returns
        -------
        xarray.DataArray
            Dims ``(chain, draw, obs, component)``.
        """
        import xarray as xr

        data = self.check_data(X)
        probs = np.stack(
            [np.exp(log_normalise(self._log_joint(data, p))[1]) for p in self._draw_params]
        )
        n_chains, n_draws = self.posterior.sizes["chain"], self.posterior.sizes["draw"]
        return xr.DataArray(
            probs.reshape(n_chains, n_draws, data.n_obs, -1),
            dims=("chain", "draw", "obs", "component"),
            coords={
                "chain": self.posterior["chain"].values,
                "draw": self.posterior["draw"].values,
                "obs": data.obs_names,
                "component": self.posterior["component"].values,
            },
            name="membership",
        )

    def predict_proba(self, X: Any) -> np.ndarray:
        """Membership probabilities averaged over draws, shape ``(n_obs, K)``.

        For Dask input (array, DataFrame, Dask-backed DataArray) a lazy Dask array
        chunked like ``X``'s rows; nothing is computed until ``.compute()``.
        """
        if is_dask_input(X):
            return lazy_prediction(self, X, "predict_proba")
        data = self.check_data(X)
        total = np.zeros((data.n_obs, self.model.n_components))
        for params in self._draw_params:
            total += np.exp(log_normalise(self._log_joint(data, params))[1])
        return total / len(self._draw_params)

    def predict(self, X: Any) -> np.ndarray:
        """Most probable component of each observation, shape ``(n_obs,)`` (lazy Dask
        array for Dask input)."""
        if is_dask_input(X):
            return lazy_prediction(self, X, "predict")
        return self.predict_proba(X).argmax(axis=1)

    def score_samples(self, X: Any) -> np.ndarray:
        """Log predictive density ``log mean_s p(x_n | theta_s)`` per observation (lazy
        Dask array for Dask input)."""
        if is_dask_input(X):
            return lazy_prediction(self, X, "score_samples")
        data = self.check_data(X)
        acc = np.full(data.n_obs, -np.inf)
        for params in self._draw_params:
            acc = np.logaddexp(acc, log_normalise(self._log_joint(data, params))[0])
        return acc - np.log(len(self._draw_params))

    def score(self, X: Any, sample_weight: Any = None) -> float:
        """Weighted mean log predictive density per observation."""
        log_density = self.score_samples(X)
        weights = check_sample_weight(sample_weight, log_density.shape[0])
        return float(weights @ log_density / weights.sum())

    def sample(self, n_samples: int = 1, random_state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw from the (posterior) predictive distribution.

        Returns
        -------
        X : numpy.ndarray of shape (n_samples, n_features)
        z : numpy.ndarray of shape (n_samples,)
            Component of each sample.
        """
        n_samples = check_int(n_samples, "n_samples")
        rng = check_random_state(random_state)
        return self.model.sample_posterior(self.posterior, n_samples, rng)

    def to_datatree(self, X: Any = None) -> xr.DataTree:
        """The result as an ArviZ-ready :class:`xarray.DataTree`.

        Parameters
        ----------
        X : array-like, optional
            Observations to add as ``observed_data`` with the pointwise
            ``log_likelihood`` of every draw.
        """
        import xarray as xr

        groups = {"posterior": self._exported_posterior().assign_attrs(self._attrs())}
        if X is not None:
            data = self.check_data(X)
            groups["observed_data"] = xr.Dataset(
                {"X": (("obs", "feature"), data.values)},
                coords={"obs": data.obs_names, "feature": list(data.feature_names)},
            )
            log_lik = np.stack(
                [log_normalise(self._log_joint(data, p))[0] for p in self._draw_params]
            )
            n_chains, n_draws = self.posterior.sizes["chain"], self.posterior.sizes["draw"]
            groups["log_likelihood"] = xr.Dataset(
                {"X": (("chain", "draw", "obs"), log_lik.reshape(n_chains, n_draws, -1))},
                coords={
                    "chain": self.posterior["chain"].values,
                    "draw": self.posterior["draw"].values,
                    "obs": data.obs_names,
                },
            )
        groups.update(self._extra_groups())
        return xr.DataTree.from_dict(groups)

    def _extra_groups(self) -> dict[str, xr.Dataset]:
        return {}

    def _exported_posterior(self) -> xr.Dataset:
        """The posterior as the DataTree holds it: only variables ArviZ can summarise
        and plot (for Gaussians, correlations as their off-diagonal pairs)."""
        return self.model.export_posterior(self.posterior)

    def _attrs(self) -> dict[str, Any]:
        attrs = self.model.declaration_attrs()
        for name, version in self.settings["versions"].items():
            attrs[f"{name}_version"] = version
        for key, value in self.settings.items():
            if key == "versions":
                continue
            attrs[key] = value if isinstance(value, (int, float, str)) else str(value)
        return attrs


class EMResult(MixtureResult):
    """A maximum-likelihood or MAP point estimate found by EM (one draw).

    Attributes
    ----------
    weights, means, covariances : numpy.ndarray
        Shapes ``(K,)``, ``(K, D)`` and ``(K, D, D)`` (full matrices for every structure).
    precisions_cholesky : numpy.ndarray
        Natural-form factors ``U`` with ``inv(cov) = U U^T`` (scikit-learn's layout).
    converged : bool
    n_iter : int
        Number of M-steps of the kept run.
    log_likelihood : float
        Weighted log-likelihood of the training data at the final parameters.
    log_likelihood_trace : numpy.ndarray
        Log-likelihood after each iteration, starting at the initial parameters.
    log_posterior_trace : numpy.ndarray or None
        Log posterior per iteration for MAP fits (what MAP-EM increases).
    spurious : tuple of str
        Why the fit is a spurious maximum of the likelihood — a component collapsed onto
        a few points or onto a line or plane of rounded data, where the likelihood is
        unbounded — one reason per collapsed component; empty for a sound fit. EM keeps
        the best start that is not spurious; this is non-empty only when every start
        was, and :func:`~bayesmix.select_components` never chooses such a fit.
    """

    def __init__(
        self,
        *,
        model: GaussianMixture,
        params: Params,
        feature_names: tuple[str, ...],
        n_obs: float,
        log_likelihood: float,
        log_max_resp: float,
        log_likelihood_trace: np.ndarray,
        log_posterior_trace: np.ndarray | None,
        converged: bool,
        n_iter: int,
        priors: ResolvedPriors | None,
        settings: dict,
        spurious: tuple[str, ...] = (),
    ) -> None:
        super().__init__(model, partial(model.point_posterior, params, feature_names), settings)
        self.params = params
        self.n_obs = n_obs
        self.log_likelihood = float(log_likelihood)
        self._log_max_resp = float(log_max_resp)
        self.log_likelihood_trace = log_likelihood_trace
        self.log_posterior_trace = log_posterior_trace
        self.converged = bool(converged)
        self.n_iter = int(n_iter)
        self.priors = priors
        self.spurious = tuple(spurious)
        self.__dict__["_draw_params"] = [params]
        self._feature_names = tuple(feature_names)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._feature_names

    @property
    def n_features(self) -> int:
        return len(self._feature_names)

    # The parameters are read from the estimate itself while the posterior Dataset is not
    # built (building it imports xarray, pandas and, through xarray, dask.array), from the
    # Dataset once it is (it may have been replaced, e.g. relabelled).
    @property
    def _posterior_built(self) -> bool:
        return not callable(self._posterior)

    @property
    def weights(self) -> np.ndarray:
        return self.parameters["weights"]

    @property
    def parameters(self) -> dict[str, np.ndarray]:
        """The estimate as arrays with the component axis first: ``weights`` and the
        family's parameters (for Gaussians ``means`` and full ``covariances``)."""
        names = self.model.parameter_names
        if not self._posterior_built:
            point = self.model.point_parameters(self.params)
            return {name: point[name] for name in names}
        return {name: self.posterior[name].values[0, 0] for name in names}

    @property
    def means(self) -> np.ndarray:
        """Component means ``E[x | k]`` ``(K, D)`` (for count families the rates or
        means of every column)."""
        if not self._posterior_built:
            return self.model.point_means(self.params)
        return self.model.component_means(self.posterior)[0, 0]

    @property
    def covariances(self) -> np.ndarray:
        if not self._posterior_built and "covariances" in self.model.parameter_names:
            return self.parameters["covariances"]
        return self.posterior["covariances"].values[0, 0]

    @property
    def precisions_cholesky(self) -> np.ndarray:
        return self.params.precisions_cholesky

    @property
    def n_parameters(self) -> int:
        """Free parameters: ``K - 1`` weights, ``K D`` means and the covariances."""
        return self.model.n_parameters(self.n_features)

    # -- information criteria (scikit-learn's sign: lower is better) ----------------------
    def _fit_terms(self, X: Any) -> tuple[float, float, float]:
        if X is None:
            return self.log_likelihood, self.n_obs, self._log_max_resp
        data = self.check_data(X)
        log_norm, log_resp = log_normalise(self._log_joint(data, self.params))
        return float(log_norm.sum()), float(data.n_obs), float(log_resp.max(axis=1).sum())

    def bic(self, X: Any = None) -> float:
        """Bayesian information criterion ``-2 log L + p log n`` (lower is better).

        mclust reports ``-bic`` (higher is better). Without ``X``, the training data's
        log-likelihood and (weighted) size are used.
        """
        log_lik, n_obs, _ = self._fit_terms(X)
        return -2.0 * log_lik + self.n_parameters * np.log(n_obs)

    def aic(self, X: Any = None) -> float:
        """Akaike information criterion ``-2 log L + 2 p`` (lower is better)."""
        log_lik, _, _ = self._fit_terms(X)
        return -2.0 * log_lik + 2.0 * self.n_parameters

    def icl(self, X: Any = None) -> float:
        """Integrated completed likelihood (Biernacki et al. 2000), lower is better.

        ``bic - 2 sum_n log max_k z_nk``: BIC plus a penalty for assignment
        uncertainty (mclust's ICL with the opposite sign).
        """
        log_lik, n_obs, log_max_resp = self._fit_terms(X)
        return -2.0 * log_lik + self.n_parameters * np.log(n_obs) - 2.0 * log_max_resp

    # -- reporting -----------------------------------------------------------------
    def summary(self) -> pd.DataFrame:
        """Point estimates as a table: one row per weight, mean and standard deviation,
        and per correlation for matrix structures, labelled as in a NUTS or ADVI
        ``summary()`` (the parameters of :func:`identified_parameters`)."""
        import pandas as pd

        labels, draws = parameter_draws(self.model.identified_parameters(self.posterior))
        rows = list(zip(labels, draws[0, 0].tolist(), strict=True))
        return pd.DataFrame(rows, columns=["parameter", "estimate"]).set_index("parameter")

    def _extra_groups(self) -> dict[str, xr.Dataset]:
        import xarray as xr

        trace = {"log_likelihood": ("iteration", self.log_likelihood_trace)}
        if self.log_posterior_trace is not None:
            trace["log_posterior"] = ("iteration", self.log_posterior_trace)
        return {"fit_trace": xr.Dataset(trace)}

    def _attrs(self) -> dict[str, Any]:
        attrs = super()._attrs()
        attrs.update(
            converged=int(self.converged),
            n_iter=self.n_iter,
            log_likelihood=self.log_likelihood,
            n_obs=self.n_obs,
        )
        return attrs

    def __repr__(self) -> str:
        method = "MAP-EM" if self.log_posterior_trace is not None else "EM (maximum likelihood)"
        status = (
            f"converged in {self.n_iter} iterations"
            if self.converged
            else (f"NOT converged after {self.n_iter} iterations")
        )
        lines = [
            f"{method} fit of {self.model!r}",
            f"  {status}; log-likelihood {self.log_likelihood:.4f} on {self.n_obs:g} obs",
            f"  BIC {self.bic():.2f}  AIC {self.aic():.2f}  ICL {self.icl():.2f} (lower is better)",
            *([f"  {self._spurious_note()}"] if self.spurious else []),
            "",
            self._parameter_table().to_string(float_format=lambda v: f"{v:.4g}"),
        ]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from bayesmix.display import html_card

        method = "MAP-EM" if self.log_posterior_trace is not None else "EM (maximum likelihood)"
        status = (
            f"converged in {self.n_iter} iterations"
            if self.converged
            else f"not converged after {self.n_iter} iterations: raise max_iter or tol"
        )
        facts = [
            ("model", repr(self.model)),
            ("status", status),
            ("log-likelihood", f"{self.log_likelihood:.4f} on {self.n_obs:g} observations"),
            ("BIC / AIC / ICL", f"{self.bic():.2f} / {self.aic():.2f} / {self.icl():.2f}"),
            ("fit time", f"{self.settings.get('fit_seconds', float('nan')):.3g} s"),
        ]
        return html_card(
            f"{method} fit",
            facts,
            table=self._parameter_table(),
            notes=["BIC, AIC and ICL in scikit-learn's sign: lower is better"],
            warnings=([] if self.converged else [status])
            + ([self._spurious_note()] if self.spurious else []),
        )

    def _spurious_note(self) -> str:
        return (
            f"SPURIOUS maximum (every start collapsed; the likelihood is unbounded there): "
            f"{'; '.join(self.spurious)}"
        )

    def _parameter_table(self) -> pd.DataFrame:
        return self.model.parameter_table(self.posterior)
