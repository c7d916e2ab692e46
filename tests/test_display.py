"""Rich notebook display of declarations and results."""

from __future__ import annotations

import warnings
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.chunks, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.chunks.append(data)


def _parse(html: str) -> _Text:
    parser = _Text()
    parser.feed(html)
    return parser


def test_declaration_card_names_every_setting():
    model = bm.GaussianMixture(3, "tied", priors={"mean_scale": 2.0})
    page = _parse(model._repr_html_())
    text = " ".join(page.chunks)
    assert "tied (one covariance shared by all components, mclust's EEE)" in text
    assert "prior mean_scale" in text and "2.0" in text
    assert "nuts" in text and "style" in page.tags
    assert "default, scaled to the data" in " ".join(
        _parse(bm.GaussianMixture(2)._repr_html_()).chunks
    )


def test_em_card_shows_fit_and_parameters(faithful, faithful_em):
    page = _parse(faithful_em._repr_html_())
    text = " ".join(page.chunks)
    assert f"{faithful_em.log_likelihood:.4f}" in text
    assert f"{faithful_em.bic():.2f}" in text and "converged in" in text
    assert "table" in page.tags and "mean[eruptions]" in text


def test_unconverged_em_card_warns():
    X = np.random.default_rng(0).normal(size=(50, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)
        result = bm.GaussianMixture(3).fit(X, max_iter=1, tol=0.0, random_state=0)
    assert 'class="bayesmix-warn"' in result._repr_html_()
    assert "raise max_iter" in result._repr_html_()


def test_markup_in_names_is_escaped():
    X = np.random.default_rng(1).normal(size=(40, 1))
    result = bm.GaussianMixture(1).fit(pd.DataFrame(X, columns=["<b>x</b>"]))
    assert "<b>x</b>" not in result._repr_html_() and "&lt;b&gt;" in result._repr_html_()


@pytest.mark.slow
def test_posterior_card_shows_draws_and_diagnostics(faithful_nuts):
    page = _parse(faithful_nuts._repr_html_())
    text = " ".join(page.chunks)
    assert "4 chain(s) x 1000 draws on 272 observations" in text
    assert "no problems found" in text and "posterior sd of mean[waiting]" in text
    weights = faithful_nuts.posterior["weights"].mean(("chain", "draw")).values
    assert f"{weights[0]:.4g}" in text
