"""Data sets shipped with bayesmix (nothing is downloaded at run time)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import numpy as np
import pandas as pd

from bayesmix.validation import check_int, check_random_state

__all__ = [
    "load_banknote",
    "load_biochemists",
    "load_faithful",
    "load_galaxies",
    "make_shifted_stretched",
]


def _read(name: str) -> pd.DataFrame:
    with files(__package__).joinpath(name).open("r") as handle:
        return pd.read_csv(handle)


def load_faithful() -> pd.DataFrame:
    """Old Faithful geyser eruptions, Yellowstone (R ``datasets::faithful``).

    272 rows; columns ``eruptions`` (eruption time, minutes) and ``waiting`` (time to the
    next eruption, minutes). The classic two-cluster example for Gaussian mixtures
    (Härdle 1991; Azzalini & Bowman 1990).
    """
    return _read("faithful.csv")


def load_banknote(status: bool = False) -> pd.DataFrame:
    """Six measurements (mm) of 200 Swiss 1000-franc bank notes, 100 genuine and 100
    counterfeit (Flury & Riedwyl 1988; R ``mclust::banknote``).

    Columns ``Length``, ``Left``, ``Right``, ``Bottom``, ``Top`` and ``Diagonal``; with
    ``status=True`` also ``Status`` (``"genuine"`` or ``"counterfeit"``, categorical), the
    known class, first. A standard test of model-based clustering: mclust's BIC over its
    14 covariance models is the everyday call on it.

    References: B. Flury & H. Riedwyl (1988), *Multivariate Statistics: A Practical
    Approach*, Chapman & Hall, Table 1.1.
    """
    frame = _read("banknote.csv")
    frame["Status"] = pd.Categorical(frame["Status"], categories=["genuine", "counterfeit"])
    return frame if status else frame.drop(columns="Status")


def load_galaxies(thousands: bool = False) -> pd.DataFrame:
    """Velocities of 82 galaxies in the Corona Borealis region (R ``MASS::galaxies``).

    One column ``velocity`` in km/s, or in 1000 km/s with ``thousands=True`` as it is
    often analysed. The classic benchmark for mixtures with an unknown number of
    components (Roeder 1990; Richardson & Green 1997).
    """
    frame = _read("galaxies.csv").astype(float)
    if thousands:
        frame["velocity"] = frame["velocity"] / 1000.0
    return frame


def load_biochemists() -> pd.DataFrame:
    """Publications of 915 biochemistry PhD students (R ``flexmix::bioChemists``, also
    ``pscl::bioChemists``; Long 1990).

    Columns: ``art`` (articles published in the last three years of the PhD, a count
    from 0 to 19), ``fem`` (``"Men"`` or ``"Women"``), ``mar`` (``"Single"`` or
    ``"Married"``), ``kid5`` (number of children under six), ``phd`` (prestige of the
    PhD department, rounded to the three decimals of the source, which stores it in
    single precision) and ``ment`` (articles by the mentor in the last three years).
    The classic example of overdispersed counts: Poisson and negative binomial mixtures
    of ``art`` (Grün & Leisch 2008; Zeileis, Kleiber & Jackman 2008).

    References: J. S. Long (1990), The origins of sex differences in science, *Social
    Forces* 68(4), 1297-1316; B. Grün & F. Leisch (2008), FlexMix version 2, *Journal of
    Statistical Software* 28(4).
    """
    return _read("biochemists.csv")


def make_shifted_stretched(
    n_samples: int = 300, random_state: Any = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Two 2-D Gaussian clusters: one shifted to (20, 20), one stretched and rotated.

    The classic mixture example of scikit-learn's documentation: half the points are
    standard normal shifted by (20, 20); the other half are standard normal row vectors
    ``z`` mapped to ``z @ A`` with ``A = [[0, -0.7], [3.5, 0.7]]``, centred at the origin
    with covariance ``A.T @ A = [[12.25, 2.45], [2.45, 0.98]]``.

    Parameters
    ----------
    n_samples : int
        Total number of points (split as evenly as possible).
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    X : pandas.DataFrame
        Columns ``x0`` and ``x1``.
    labels : numpy.ndarray
        True component of each row: 0 shifted, 1 stretched.
    """
    n_samples = check_int(n_samples, "n_samples", minimum=2)
    rng = check_random_state(random_state)
    n_shifted = n_samples // 2
    shifted = rng.standard_normal((n_shifted, 2)) + np.array([20.0, 20.0])
    stretched = rng.standard_normal((n_samples - n_shifted, 2)) @ np.array(
        [[0.0, -0.7], [3.5, 0.7]]
    )
    X = pd.DataFrame(np.vstack([shifted, stretched]), columns=["x0", "x1"])
    labels = np.repeat([0, 1], [n_shifted, n_samples - n_shifted])
    return X, labels
