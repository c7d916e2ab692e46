"""Turn a :class:`~bayesmix.GaussianMixture` declaration into a PyMC model.

The latent assignments are marginalised by one log-sum-exp over components, vectorised
over components and observations. Data and prior parameters enter as ``pm.Data``, so one
compiled model serves every data set of the same shape. Free variables are
dimensionless (means ``loc + scale * raw``, Bartlett factors, scaled inverse-gamma
variances); ``weights``, ``means`` and the precision parameter are Deterministics in the
data's units.

The weights have a symmetric Dirichlet prior, or (``ModelSpec.weight_prior =
"stick_breaking"``: ``weight_prior="dirichlet_process"`` or ``"pitman_yor"`` in
``fit``) the truncated stick-breaking prior ``v_k = w_k / sum_{j>=k} w_j ~ Beta(a_k,
b_k)`` of ``K - 1`` sticks, the K-th weight the remainder, sampled as the sticks
(``weights_sticks``, PyMC's ``Beta`` on its log-odds scale; see
:func:`bayesmix.families.sticks.stick_breaking_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayesmix.data import Data
from bayesmix.families.gaussian.covariance import CovarianceStructure
from bayesmix.families.gaussian.missing import MissingLayout, missing_layout
from bayesmix.families.sticks import flat_sticks, stick_breaking_weights
from bayesmix.priors import ResolvedPriors
from bayesmix.results import sample_mixture

__all__ = [
    "ModelSpec",
    "build_pymc",
    "pymc_inputs",
    "initial_point",
    "point_estimate_start",
    "missing_patterns",
    "WEIGHT_SPECS",
]

#: the weight priors of a :class:`ModelSpec`: the symmetric Dirichlet or the truncated
#: stick-breaking prior (Dirichlet or Pitman-Yor process)
WEIGHT_SPECS = ("dirichlet", "stick_breaking")

_SIGNATURE_LETTERS = {"component": "k", "feature": "d", "feature_": "d"}


@dataclass(frozen=True)
class ModelSpec:
    """What fixes the graph of the PyMC model (and so its compiled code)."""

    covariance_type: str
    n_components: int
    n_features: int
    order_feature: int | None
    # observed-feature masks of the incomplete rows' patterns (missing="marginalize"),
    # as ``bayesmix.families.gaussian.missing.missing_layout(X).key``; () for complete data
    missing_patterns: tuple[tuple[bool, ...], ...] = ()
    # "dirichlet", or "stick_breaking" (the priors' weight_sticks, pm.Data
    # "prior_weight_sticks")
    weight_prior: str = "dirichlet"


def pymc_inputs(
    data: Data,
    priors: ResolvedPriors,
    structure: CovarianceStructure,
    rotation: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Values of the model's ``pm.Data`` inputs for one data set and its priors.

    With missing values, ``X_data`` holds the complete rows and ``X_pattern{p}_data``
    the observed columns of the rows with the ``p``-th missingness pattern.
    ``prior_mean_rotation`` is the ordered means' rotation (see :func:`build_pymc`;
    default: the identity). ``prior_weight_sticks`` (the sticks' Beta parameters
    ``(2, K - 1)``) is there when the priors are
    :class:`~bayesmix.priors.StickBreakingPriors`.
    """
    D = data.n_features
    sticks = {}
    if getattr(priors, "weight_sticks", None) is not None:  # StickBreakingPriors
        sticks["prior_weight_sticks"] = np.asarray(priors.weight_sticks, dtype=float)
    return {
        **_observation_inputs(data),
        **sticks,
        "prior_weight_concentration": priors.weight_concentration,
        "prior_mean_loc": priors.mean_loc,
        "prior_mean_scale": priors.mean_scale,
        "prior_covariance_dof": np.asarray(priors.covariance_dof, dtype=float),
        "prior_covariance_scale": structure.pymc_scale(priors.covariance_scale),
        "prior_mean_rotation": np.eye(D) if rotation is None else np.asarray(rotation, float),
    }


def initial_point(spec: ModelSpec) -> dict[str, np.ndarray]:
    """A valid start for any data: distinct ordered means (the default point of an
    ordered variable is invalid); everything else starts at its support point."""
    if spec.order_feature is None:
        return {}
    return {"means_ordered_raw": np.linspace(-1.0, 1.0, spec.n_components)}


def point_estimate_start(
    spec: ModelSpec,
    structure: CovarianceStructure,
    priors: ResolvedPriors,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    rotation: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Free-variable values reproducing a point estimate (e.g. EM's, covariances in
    natural form), with components sorted along the ordered coordinate (a feature, or
    the direction of ``rotation``'s column ``spec.order_feature``)."""
    raw = (means - priors.mean_loc) / priors.mean_scale
    if rotation is not None and spec.order_feature is not None:
        raw = raw @ rotation  # the coordinates z of raw = z R^T
    order = np.argsort(raw[:, spec.order_feature or 0], kind="stable")
    if not structure.shared_across_components:
        covariances = covariances[order]
    weights = np.maximum(weights[order], 1e-3)
    raw = raw[order]
    weights = weights / weights.sum()
    if spec.weight_prior == "stick_breaking" and spec.n_components > 1:
        start = {"weights_sticks": flat_sticks(weights)}
    else:
        start = {"weights": weights}
    start.update(structure.pymc_start(covariances, structure.pymc_scale(priors.covariance_scale)))
    if spec.order_feature is None:
        start["means_raw"] = raw
        return start
    j = spec.order_feature
    ordered = raw[:, j].copy()
    gaps = np.maximum(np.diff(ordered), 1e-6)  # the transform needs strict increase
    start["means_ordered_raw"] = ordered[0] + np.concatenate([[0.0], np.cumsum(gaps)])
    if spec.n_features > 1:
        start["means_rest_raw"] = np.delete(raw, j, axis=1)
    return start


def build_pymc(
    spec: ModelSpec,
    structure: CovarianceStructure,
    data: Data,
    priors: ResolvedPriors,
    *,
    batch_size: int | None = None,
    rotation: np.ndarray | None = None,
):
    """Build the marginalised mixture as a ``pm.Model``.

    Parameters
    ----------
    spec : ModelSpec
        Structure, sizes and the ordered feature (``None`` for an exchangeable model).
    structure : CovarianceStructure
    data : Data
        Observations (their names become coords).
    priors : ResolvedPriors
    batch_size : int, optional
        Minibatch size: ``X`` then observes ``batch_size`` rows of ``X_data`` drawn
        afresh at each evaluation (``pm.Minibatch``), its log-likelihood scaled by
        ``n_obs / batch_size`` (``total_size``); for ADVI on large data. ``None`` (the
        default): every row.
    rotation : numpy.ndarray of shape (D, D), optional
        With an ordered coordinate ``j``, the standardised means are ``z R^T`` with
        ``z[:, j]`` increasing and ``R`` this orthogonal matrix (the ``pm.Data``
        ``prior_mean_rotation``): the identity (the default) orders feature ``j``, a
        rotation with a direction in column ``j`` orders the means' projections on it.

    Returns
    -------
    pymc.Model
        With coords ``obs``, ``component``, ``feature``, ``feature_`` and the observed
        variable ``X``.
    """
    import pymc as pm
    import pytensor.tensor as pt

    inputs = pymc_inputs(data, priors, structure, rotation)
    n_components, n_features = spec.n_components, spec.n_features
    if (spec.weight_prior == "stick_breaking") != ("prior_weight_sticks" in inputs):
        raise ValueError(
            f"spec.weight_prior={spec.weight_prior!r} needs priors.weight_sticks "
            "exactly when it is 'stick_breaking'."
        )
    layout = _checked_layout(spec, data)
    coords = {
        "obs": np.asarray(data.obs_names)[layout.complete],
        "component": np.arange(n_components),
        "feature": list(data.feature_names),
        "feature_": list(data.feature_names),
    }
    with pm.Model(coords=coords) as model:
        X = pm.Data("X_data", inputs["X_data"], dims=("obs", "feature"))
        concentration = pm.Data("prior_weight_concentration", inputs["prior_weight_concentration"])
        loc = pm.Data("prior_mean_loc", inputs["prior_mean_loc"])
        scale = pm.Data("prior_mean_scale", inputs["prior_mean_scale"])
        dof = pm.Data("prior_covariance_dof", inputs["prior_covariance_dof"])
        cov_scale = pm.Data("prior_covariance_scale", inputs["prior_covariance_scale"])
        mean_rotation = pm.Data("prior_mean_rotation", inputs["prior_mean_rotation"])

        if spec.weight_prior == "stick_breaking" and n_components > 1:
            sticks = pm.Data("prior_weight_sticks", inputs["prior_weight_sticks"])
            weights = stick_breaking_weights("weights", sticks, n_components)
        else:
            weights = pm.Dirichlet("weights", a=concentration, dims="component")
        raw = _raw_means(spec, mean_rotation)
        means = pm.Deterministic("means", loc + scale * raw, dims=("component", "feature"))
        precision = structure.pymc_precision(dof, cov_scale, n_components, n_features)

        precision_ndim = len(structure.natural_dims)

        def logp(value, weights, means, precision):
            # CustomDist hands parameters over with a leading broadcast dim per batch dim
            # of the value; the model has one parameter set, so take it.
            weights, means = _core(weights, 1), _core(means, 2)
            precision = _core(precision, precision_ndim)
            log_joint = pt.log(weights) + structure.pymc_log_prob(value, means, precision)
            return pt.logsumexp(log_joint, axis=-1)

        def random(weights, means, precision, rng=None, size=None):
            size = tuple(np.atleast_1d(size)) if size is not None else ()
            covariances = structure.covariance_from_precision(np.asarray(precision), n_features)
            full = np.broadcast_to(covariances, (n_components, n_features, n_features))
            draws, _ = sample_mixture(
                weights[None], means[None], full[None], int(np.prod(size, dtype=int)), rng
            )
            return draws.reshape(size + (n_features,))

        pm.CustomDist(
            "X",
            weights,
            means,
            precision,
            logp=logp,
            random=random,
            signature=_signature(structure),
            **_observed_rows(X, batch_size),
        )
        if layout.has_missing:
            _add_pattern_likelihoods(
                layout, data, inputs, structure, weights, means, precision, random
            )
    return model


def _observed_rows(X, batch_size: int | None) -> dict:
    """``CustomDist`` keywords observing every row of ``X``, or a minibatch of
    ``batch_size`` rows whose log-likelihood is scaled by ``n_obs / batch_size``."""
    import pymc as pm

    if batch_size is None:
        return {"observed": X, "dims": ("obs", "feature")}
    # total_size is symbolic (X's length), so one compiled graph serves every n_obs
    return {
        "observed": pm.Minibatch(X, batch_size=batch_size),
        "total_size": [X.shape[0], None],
    }


def _raw_means(spec: ModelSpec, rotation):
    """Standardised means ``(K, D)``: with ``spec.order_feature``, ``z R^T`` with column
    ``order_feature`` of ``z`` ordered (``R`` = ``rotation``, orthogonal: log Jacobian 0)."""
    import pymc as pm
    import pytensor.tensor as pt

    if spec.order_feature is None:
        return pm.Normal("means_raw", 0.0, 1.0, shape=(spec.n_components, spec.n_features))
    ordered = pm.Normal(
        "means_ordered_raw",
        0.0,
        1.0,
        shape=(spec.n_components,),
        transform=pm.distributions.transforms.ordered,
    )
    if spec.n_features == 1:
        return ordered[:, None]
    rest = pm.Normal("means_rest_raw", 0.0, 1.0, shape=(spec.n_components, spec.n_features - 1))
    j = spec.order_feature
    z = pt.concatenate([rest[:, :j], ordered[:, None], rest[:, j:]], axis=1)
    return z @ rotation.T


def _core(param, core_ndim: int):
    extra = param.ndim - core_ndim
    return param[(0,) * extra] if extra > 0 else param


def _signature(structure: CovarianceStructure) -> str:
    precision = ",".join(_SIGNATURE_LETTERS[d] for d in structure.natural_dims)
    return f"(k),(k,d),({precision})->(d)"


# ---------------------------------------------------------------------------------------
# missing values (missing="marginalize"): one observed-marginal likelihood per pattern


def missing_patterns(data: Data) -> tuple[tuple[bool, ...], ...]:
    """The missingness patterns of ``data`` as they enter :class:`ModelSpec`."""
    if not data.has_missing:
        return ()
    return missing_layout(data).key


def _checked_layout(spec: ModelSpec, data: Data) -> MissingLayout:
    layout = missing_layout(data)
    if layout.key != spec.missing_patterns:
        raise ValueError(
            "the data's missingness patterns differ from spec.missing_patterns; build the "
            "spec with missing_patterns=bayesmix.families.gaussian.builder.missing_patterns(data)."
        )
    if any(p.observed.size == 0 for p in layout.patterns):
        raise ValueError(
            "X has rows without any observed feature; drop them before building the model."
        )
    return layout


def _observation_inputs(data: Data) -> dict[str, np.ndarray]:
    if not data.has_missing:
        return {"X_data": data.values}
    layout = missing_layout(data)
    inputs = {"X_data": data.values[layout.complete]}
    for p, pattern in enumerate(layout.patterns):
        inputs[f"X_pattern{p}_data"] = data.values[pattern.rows][:, pattern.observed]
    return inputs


def _add_pattern_likelihoods(layout, data, inputs, structure, weights, means, precision, random):
    """One observed variable ``X_pattern{p}`` per missingness pattern whose density is
    the mixture of the marginal Gaussians of its observed features: sub-vectors of the
    means and, for matrix structures, the Cholesky factor of the selected covariance
    block."""
    import pymc as pm
    import pytensor.tensor as pt

    model = pm.modelcontext(None)
    precision_ndim = len(structure.natural_dims)
    for p, pattern in enumerate(layout.patterns):
        obs = pattern.observed
        obs_dim, feature_dim = f"obs_pattern{p}", f"feature_pattern{p}"
        model.add_coord(obs_dim, np.asarray(data.obs_names)[pattern.rows])
        model.add_coord(feature_dim, [data.feature_names[j] for j in obs])
        observed = pm.Data(
            f"X_pattern{p}_data", inputs[f"X_pattern{p}_data"], dims=(obs_dim, feature_dim)
        )

        def logp(value, weights, means, precision, means_observed, obs=obs):
            weights, means = _core(weights, 1), _core(means, 2)
            precision = _core(precision, precision_ndim)
            log_dens = structure.pymc_observed_log_prob(value, means, precision, obs)
            return pt.logsumexp(pt.log(weights) + log_dens, axis=-1)

        def random_observed(
            weights, means, precision, means_observed, rng=None, size=None, obs=obs
        ):
            return random(weights, means, precision, rng=rng, size=size)[..., obs]

        precision_sig = ",".join(_SIGNATURE_LETTERS[d] for d in structure.natural_dims)
        pm.CustomDist(
            f"X_pattern{p}",
            weights,
            means,
            precision,
            means[:, obs],  # fixes the support shape (o) of the observed columns
            logp=logp,
            random=random_observed,
            signature=f"(k),(k,d),({precision_sig}),(k,o)->(o)",
            observed=observed,
            dims=(obs_dim, feature_dim),
        )
