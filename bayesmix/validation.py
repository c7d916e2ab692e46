"""Validators for scalar options, shared by every public entry point."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = [
    "check_bool",
    "check_int",
    "check_float",
    "check_random_state",
    "check_choice",
    "check_ci_prob",
]


def check_bool(value: Any, name: str) -> bool:
    """Return ``value`` as a bool if it is ``True`` or ``False`` (numpy's too).

    Parameters
    ----------
    value : Any
        The value to check.
    name : str
        Argument name used in the error message.

    Returns
    -------
    bool

    Raises
    ------
    TypeError
        ``value`` is not a (numpy) bool.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}.")
    return bool(value)


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int ``>= minimum`` or raise a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}.")
    return int(value)


def check_float(value: Any, name: str, minimum: float = 0.0, inclusive: bool = True) -> float:
    """Return ``value`` as a finite float ``>= minimum`` (or ``>``) or raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r}.")
    value = float(value)
    too_small = value < minimum if inclusive else value <= minimum
    if not np.isfinite(value) or too_small:
        bound = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be finite and {bound} {minimum}; got {value}.")
    return value


# The credible mass of every interval bayesmix reports unless told otherwise (summaries,
# memberships, density bands, comparisons, plots, the report and the CLI).
DEFAULT_CI_PROB = 0.94


def check_ci_prob(ci_prob: Any) -> float:
    """Return the probability mass of a credible interval, strictly inside (0, 1)."""
    if isinstance(ci_prob, bool) or not isinstance(ci_prob, numbers.Real):
        raise TypeError(f"ci_prob must be a number in (0, 1), e.g. 0.94; got {ci_prob!r}.")
    value = float(ci_prob)
    if not 0.0 < value < 1.0:
        raise ValueError(
            "ci_prob must lie strictly between 0 and 1 (e.g. 0.94 for a 94% interval); "
            f"got {value}."
        )
    return value


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}.")
    return value


def check_random_state(random_state: Any) -> np.random.Generator:
    """Turn ``None``, an int, a SeedSequence or a Generator into a Generator."""
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(random_state, bool):
            raise TypeError("random_state must be None, an int or a numpy Generator; got a bool.")
        if isinstance(random_state, numbers.Integral) and random_state < 0:
            raise ValueError(f"random_state must be >= 0; got {random_state}.")
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31))
    raise TypeError(
        "random_state must be None, an int, a numpy SeedSequence or Generator; "
        f"got {type(random_state).__name__}."
    )


def reproducible_rng(random_state: Any) -> tuple[np.random.Generator, dict[str, Any]]:
    """The Generator for ``random_state`` and what to record to reproduce it.

    Returns ``(generator, record)``: ``record`` is ``{"seed": int}`` for an int or
    ``None`` (a seed is drawn, so even an unseeded fit can be repeated), and
    ``{"generator_state": dict}`` — the bit generator's state before use — for a
    Generator, SeedSequence or RandomState. Pass the seed back as ``random_state``, or
    restore the state with ``generator.bit_generator.state = record["generator_state"]``.
    """
    if random_state is None:
        random_state = int(np.random.SeedSequence().generate_state(1)[0])
    rng = check_random_state(random_state)
    if isinstance(random_state, numbers.Integral):
        return rng, {"seed": int(random_state)}
    return rng, {"generator_state": rng.bit_generator.state}
