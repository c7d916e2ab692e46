"""What a fit does when it is interrupted (Ctrl-C, ``KeyboardInterrupt``): it stops and
returns the work done so far, labelled, instead of losing it.

- MCMC (NUTS, Gibbs) returns the draws made before the interrupt, every chain cut to
  the shortest chain's length; ADVI the approximation reached (its draws are drawn as
  usual); EM the best state reached (the best finished start, or the current start's
  parameters), with ``converged=False``.
- The result's ``settings`` record ``interrupted=True``, and an
  :class:`~bayesmix.InterruptedFitWarning` says how much of the work was done and that
  the diagnostics are computed on that.
- With nothing to return (interrupted while compiling, during the MAP-EM start of a
  Bayesian fit, or during NUTS' or Gibbs' tuning, whose draws are not kept), the
  ``KeyboardInterrupt`` is raised again.
- A fit run inside another fit or inside a loop of fits (:func:`nested_fits`: the MAP-EM
  start of a Bayesian fit, the fits of :func:`~bayesmix.select_components`, bootstrap
  refits) does not keep partial work: the interrupt stops the whole loop.
- A second Ctrl-C while the partial result is assembled is not caught: it interrupts that
  as Python normally does.
"""

from __future__ import annotations

import contextlib
import contextvars
import signal
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from bayesmix.exceptions import ConvergenceWarning, InterruptedFitWarning

__all__ = [
    "INTERRUPTS",
    "is_interrupt",
    "keeps_partial_work",
    "nested_fits",
    "warn_interrupted",
    "warn_vb_unfinished",
    "SigintWatch",
    "watch_sigint",
    "HeldSigint",
    "deferred_sigint",
    "sigint_scope",
    "completed_draws",
]

_NESTED = contextvars.ContextVar("bayesmix_nested_fits", default=0)
# what a Ctrl-C can surface as: a SIGINT handled while numba-compiled code calls back into
# Python (e.g. numba's _numba_unpickle) comes out as a SystemError caused by the
# KeyboardInterrupt; catch these and ask is_interrupt
INTERRUPTS = (KeyboardInterrupt, SystemError)


def is_interrupt(error: BaseException) -> bool:
    """Whether ``error`` is a ``KeyboardInterrupt``, or an exception raised because of
    one (in its ``__cause__`` / ``__context__`` chain, as numba's SystemError)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def keeps_partial_work() -> bool:
    """Whether an interrupted fit returns its partial work (it is not nested in another
    fit or a loop of fits, see :func:`nested_fits`)."""
    return _NESTED.get() == 0


@contextlib.contextmanager
def nested_fits() -> Iterator[None]:
    """Fits run inside this block re-raise ``KeyboardInterrupt`` instead of returning
    their partial work, so that one Ctrl-C stops the enclosing fit or loop."""
    token = _NESTED.set(_NESTED.get() + 1)
    try:
        yield
    finally:
        _NESTED.reset(token)


def warn_interrupted(
    what: str, done: int, total: int, unit: str, stacklevel: int = 3, holds: str | None = None
) -> None:
    """Emit the :class:`~bayesmix.InterruptedFitWarning` of a fit (``what``) stopped
    after ``done`` of ``total`` ``unit``; ``holds`` says what the result holds (default:
    those ``done`` ``unit``, on which its diagnostics are computed)."""
    if holds is None:
        holds = f"the result holds those {done} {unit}, and its diagnostics are computed on them"
    warnings.warn(
        f"{what} was interrupted (KeyboardInterrupt) after {done} of {total} {unit}; "
        f"{holds} (settings['interrupted'] is True).",
        InterruptedFitWarning,
        stacklevel=stacklevel + 1,
    )


def warn_vb_unfinished(
    interrupted: bool,
    converged: bool,
    n_iter: int,
    max_iter: int,
    tol: float,
    change: str = "ELBO",
    stacklevel: int = 3,
) -> None:
    """The warning of a closed-form VB fit that ended before converging: interrupted
    (Ctrl-C; an :class:`~bayesmix.InterruptedFitWarning`) or out of iterations (a
    :class:`~bayesmix.ConvergenceWarning`); ``change`` names what ``tol`` bounds. Nothing
    for a converged fit. ``stacklevel`` as the caller's own ``warnings.warn`` would give."""
    if interrupted:
        warn_interrupted(
            "vb",
            n_iter,
            max_iter,
            "iterations",
            stacklevel=stacklevel + 1,
            holds="the result holds draws from the approximation reached then (the best "
            "run so far, not converged), and its ELBO history stops there",
        )
    elif not converged:
        warnings.warn(
            f"vb did not converge in max_iter={max_iter} iterations (last change of the "
            f"{change} above tol={tol}); increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=stacklevel + 1,
        )


class SigintWatch:
    """Counts the SIGINTs received while it is active (see :func:`watch_sigint`)."""

    def __init__(self) -> None:
        self.count = 0

    @property
    def interrupted(self) -> bool:
        return self.count > 0


@contextlib.contextmanager
def watch_sigint() -> Iterator[SigintWatch]:
    """Count SIGINTs (Ctrl-C) while the block runs, for libraries that catch the
    ``KeyboardInterrupt`` themselves and return normally (PyMC's samplers and ADVI):
    the handler counts the signal and then does what the handler before it did (by
    default, raise ``KeyboardInterrupt``). Outside the main thread nothing is installed
    and nothing is counted."""
    watch = SigintWatch()
    if threading.current_thread() is not threading.main_thread():
        yield watch
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        watch.count += 1
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield watch
    finally:
        signal.signal(signal.SIGINT, previous)


class HeldSigint:
    """A SIGINT held by :func:`deferred_sigint`, released at its end or earlier by
    :meth:`release`; also the context manager :func:`deferred_sigint` returns (entering
    it installs the holding handler, in the main thread only, unless a
    :func:`sigint_scope` installed it already)."""

    def __init__(
        self, previous: Any = None, *, install: bool = False, scope: HeldSigint | None = None
    ) -> None:
        self.previous = previous
        self.held: list[tuple[int, Any]] = [] if scope is None else scope.held
        self.holding = 0  # the blocks open that hold a SIGINT (a scope's handler)
        self._install = install
        self._installed = False
        self._scope = scope

    def hold(self, signum: int, frame: Any) -> None:
        """The handler: hold the SIGINT while a block holds, else (a :func:`sigint_scope`'s
        handler between blocks) do at once what the handler before would have done."""
        self.held.append((signum, frame))
        if not self.holding:
            self.release()

    def release(self) -> None:
        """Do what the handler before would have done with a held SIGINT (by default,
        raise ``KeyboardInterrupt``); nothing if none was held. Loops that call compiled
        code call it between two calls, so a Ctrl-C ends them at once."""
        if self._scope is not None:
            self._scope.release()
            return
        if not self.held:
            return
        signum, frame = self.held[0]
        self.held.clear()
        if callable(self.previous):
            self.previous(signum, frame)
        elif self.previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    def __enter__(self) -> HeldSigint:
        if self._scope is not None:  # the scope's handler is installed: hold
            self._scope.holding += 1
        # signals reach only the main thread: elsewhere nothing is installed
        elif self._install and threading.get_ident() == threading.main_thread().ident:
            self.holding = 1
            self.previous = signal.signal(signal.SIGINT, self.hold)
            self._installed = True
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._scope is not None:
            self._scope.holding -= 1
            if not self._scope.holding:
                self._scope.release()
        elif self._installed:
            self._installed = False
            signal.signal(signal.SIGINT, self.previous)
            self.release()


# the handler a sigint_scope installed (None: none is active)
_SCOPE: list[HeldSigint | None] = [None]


@contextlib.contextmanager
def sigint_scope() -> Iterator[None]:
    """Install :func:`deferred_sigint`'s handler once for the block rather than at each
    ``deferred_sigint`` block inside it: the compiled EM loop holds SIGINT around each of
    its calls, thousands in a model-selection table, and installing a handler costs more
    than such a call. Between those blocks a SIGINT does at once what the handler before
    would have done (by default, raise ``KeyboardInterrupt``), as without the scope.
    Nothing is installed outside the main thread or inside another scope."""
    if _SCOPE[0] is not None or threading.current_thread() is not threading.main_thread():
        yield
        return
    scope = HeldSigint()
    scope.previous = signal.signal(signal.SIGINT, scope.hold)
    _SCOPE[0] = scope
    try:
        yield
    finally:
        _SCOPE[0] = None
        signal.signal(signal.SIGINT, scope.previous)


def deferred_sigint() -> HeldSigint:
    """Hold a SIGINT (Ctrl-C) that arrives while the block runs until it ends (or until
    the yielded :class:`HeldSigint` is released), then do what the handler before would
    have done (by default, raise ``KeyboardInterrupt``).

    For compiled calls: numba-compiled code that calls back into Python (numba's
    ``_numba_unpickle``) while a SIGINT is handled gets an exception it cannot propagate,
    and the process crashed (SIGSEGV, seen in the compiled EM loop and in ADVI's
    PyTensor step). Outside the main thread nothing is installed (signals reach only the
    main thread); inside a :func:`sigint_scope` the scope's handler holds. Use as
    ``with deferred_sigint() as held: ...``."""
    scope = _SCOPE[0]
    if scope is not None and threading.get_ident() == threading.main_thread().ident:
        return HeldSigint(scope.previous, scope=scope)
    return HeldSigint(install=True)


def completed_draws(values: np.ndarray) -> np.ndarray:
    """Per chain, how many leading draws of ``values`` ``(chain, draw, ...)`` are all
    finite (a sampler pads interrupted chains with NaN)."""
    if values.shape[1] == 0:  # interrupted while tuning: no draw at all
        return np.zeros(values.shape[0], dtype=int)
    finite = np.isfinite(values.reshape(values.shape[:2] + (-1,))).all(axis=-1)
    return np.where(finite.all(axis=1), finite.shape[1], np.argmin(finite, axis=1))
