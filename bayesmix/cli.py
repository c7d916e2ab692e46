"""The ``bayesmix`` command line: ``fit``, ``select`` and ``demo``.

Built on click (``pip install 'bayesmix[cli]'``), which only this module imports. Every
error ends in one line on stderr (``Error: ...``) and a non-zero exit code: 2 for bad
usage or input, 1 when a fit fails; ``--traceback`` shows the Python traceback instead.
"""

from __future__ import annotations

import logging
import re
import shlex
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

__all__ = ["cli", "main", "read_data"]

FIT_METHODS = ("em", "map", "gibbs", "nuts", "advi", "fullrank_advi", "vb")
COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")
# mclust's 14 covariance models in mclust's order (bayesmix.families.gaussian.covariance.
# MCLUST_MODELS, kept here so --help does not import the package); --covariance takes them
# in any case, and "all" for the 14
MCLUST_NAMES = (
    "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE",
    "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV",
)  # fmt: skip
# the non-Gaussian families by name (bayesmix.families.FAMILIES; kept here so --help does
# not import the package)
FAMILY_NAMES = ("poisson", "negative_binomial", "student_t", "bernoulli", "categorical", "auto")
#: the families ``select`` compares (the category families are fitted by ``fit``)
SELECT_FAMILY_NAMES = ("poisson", "negative_binomial", "student_t")
#: families that fit a CSV's text columns (as categories, latent class analysis); "auto"
#: chooses the family from the columns (bayesmix.Mixture.resolve_family)
TEXT_FAMILIES = ("bernoulli", "categorical", "independent", "auto")
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zip", ".xz", ".zst")
#: The console lists at most about this many estimates per fit (the weights, then the means
#: in the features that separate the components most); summary.csv holds every parameter.
MAX_CONSOLE_ROWS = 24
_FILE_TYPES = "CSV (.csv, .tsv, .txt, optionally compressed: .csv.gz ...) or Parquet (.parquet)"


# -- errors -------------------------------------------------------------------------------
class _InputError(click.ClickException):
    """Bad input data (exit code 2, like click's usage errors)."""

    exit_code = 2


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _fail(message: str, exit_code: int) -> None:
    click.echo(f"Error: {_one_line(message)}", err=True)
    sys.exit(exit_code)


class _Group(click.Group):
    """A group whose errors, in every command, are one line on stderr."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any):
        argv = list(sys.argv[1:] if args is None else args)
        show_traceback = "--traceback" in argv
        extra.pop("standalone_mode", None)
        try:
            rv = super().main(argv, prog_name or "bayesmix", standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            _fail(exc.format_message() + hint, exc.exit_code)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            _fail("interrupted.", 130)
        except Exception as exc:  # a fit failed: one line unless --traceback
            if show_traceback:
                raise
            if isinstance(exc, (ValueError, TypeError)):  # bayesmix's messages say the fix
                _fail(str(exc), 1)
            _fail(f"{type(exc).__name__}: {exc} (rerun as 'bayesmix --traceback ...')", 1)
        sys.exit(rv if isinstance(rv, int) else 0)


# -- parameter types ------------------------------------------------------------------------
class _ChoiceList(click.ParamType):
    """Comma-separated choices, e.g. ``em,nuts``."""

    def __init__(self, choices: Sequence[str], name: str) -> None:
        self.choices = tuple(choices)
        self.name = name

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(self.choices) + "],..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, (list, tuple)):
            return list(value)
        items = [v.strip().lower() for v in str(value).split(",")]
        if not all(items):
            self.fail(
                f"{value!r} has an empty item; write e.g. {','.join(self.choices[:2])}.",
                param,
                ctx,
            )
        bad = [v for v in items if v not in self.choices]
        if bad:
            self.fail(
                f"unknown {self.name} {', '.join(map(repr, bad))}; choose from "
                f"{', '.join(self.choices)} (comma-separated for several).",
                param,
                ctx,
            )
        return list(dict.fromkeys(items))


class _CovarianceList(_ChoiceList):
    """Comma-separated covariance structures: bayesmix's names, mclust's (any case) and
    ``all`` (mclust's 14 in mclust's order)."""

    def __init__(self) -> None:
        super().__init__((*COVARIANCE_TYPES, "all", *MCLUST_NAMES), "covariance type")
        self.choices = (*COVARIANCE_TYPES, "all", *(name.lower() for name in MCLUST_NAMES))

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join((*COVARIANCE_TYPES, "all", "EII|...|VVV")) + "],..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        # "all" is passed on as it is: select_components fits mclust's 14 models, or on
        # one column of data its two univariate ones (E and V)
        names = [_covariance_name(item) for item in super().convert(value, param, ctx)]
        return list(dict.fromkeys(names))


def _covariance_name(name: str) -> str:
    """mclust's names upper case (``vev`` -> ``VEV``), bayesmix's (and ``all``) lower
    case."""
    return name.upper() if name.upper() in MCLUST_NAMES else name.lower()


class _ComponentList(click.ParamType):
    """Numbers of components: ``1-6``, ``2,3,5`` or ``1-3,6``."""

    name = "K-LIST"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, (list, tuple)):
            return list(value)
        ks: set[int] = set()
        for part in str(value).replace(" ", "").split(","):
            match = re.fullmatch(r"(-?\d+)(?:-(-?\d+))?", part)
            if match is None:
                self.fail(
                    f"{value!r} is not a list of numbers of components; write a range such "
                    "as 1-6, a list such as 2,3,5, or both (1-3,6).",
                    param,
                    ctx,
                )
            low = int(match[1])
            high = low if match[2] is None else int(match[2])
            if low < 1:
                self.fail(
                    f"numbers of components must be >= 1; got {low} in {value!r}.", param, ctx
                )
            if high < low:
                self.fail(
                    f"the range {part} is empty; write it low-high, e.g. {high}-{low}.", param, ctx
                )
            ks.update(range(low, high + 1))
        return sorted(ks)


# -- reading data ---------------------------------------------------------------------------
def _file_kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in CSV_SUFFIXES:
        return "tsv" if suffix == ".tsv" else "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise _InputError(
        f"cannot tell the file type of '{path}' (suffix {suffix or 'none'!r}); bayesmix "
        f"reads {_FILE_TYPES}."
    )


#: Separators a CSV may use; the header row's most frequent one is taken.
CSV_SEPARATORS = (",", ";", "\t", "|")
_SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "'|'"}
_DECIMAL_COMMA = re.compile(r"\s*[-+]?\d*,\d+(?:[eE][-+]?\d+)?\s*")


def _head_lines(path: Path, n_lines: int = 20) -> list[str]:
    """The first lines of a (possibly compressed) text file, unparsed."""
    import csv

    import pandas as pd

    lines = pd.read_csv(
        path, sep="\x1f", header=None, nrows=n_lines, dtype=str, quoting=csv.QUOTE_NONE,
        keep_default_na=False, engine="python", skip_blank_lines=True,
    )  # fmt: skip
    return [str(line) for line in lines.iloc[:, 0]]


def _read_csv(
    path: Path, kind: str, na_values: list[str], info: dict[str, Any], messages: list[str]
) -> Any:
    """Read a CSV with the separator of its header row and its decimal mark."""
    import pandas as pd

    sep, decimal = "\t", "."
    if kind != "tsv":
        lines = _head_lines(path)
        header = lines[0] if lines else ""
        sep = max(CSV_SEPARATORS, key=header.count)
        sep = sep if header.count(sep) else ","
        if sep != ",":
            cells = [cell for line in lines[1:] for cell in line.split(sep)]
            if any(_DECIMAL_COMMA.fullmatch(cell) for cell in cells):
                decimal = ","
    if sep not in (",", "\t") or decimal != ".":
        how = f"{_SEPARATOR_NAMES[sep]}-separated values" + (
            " with decimal commas" if decimal == "," else ""
        )
        messages.append(f"read '{path.name}' as {how}.")
        info["format"] = how
    return pd.read_csv(path, sep=sep, decimal=decimal, na_values=na_values or None)


def _check_mostly_numeric(frame: Any, path: Path) -> None:
    """Refuse a column of numbers with a few text cells (e.g. ``?`` for missing), which
    would otherwise be dropped as non-numeric."""
    import pandas as pd

    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) or values.notna().sum() == 0:
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        text = values.notna() & numbers.isna()
        if numbers.notna().sum() < text.sum():  # mostly text: a non-numeric column
            continue
        position = int(text.to_numpy().argmax())
        tokens = sorted({str(v) for v in values[text]})
        raise _InputError(
            f"column {column!r} holds numbers but line {position + 2} of '{path.name}' has "
            f"{str(values.iloc[position])!r} ({int(text.sum())} such cell(s): "
            f"{', '.join(map(repr, tokens[:5]))}); fix those cells, or treat them as missing "
            f"with --na-values {shlex.quote(','.join(tokens[:5]))} (and drop those rows with "
            "--drop-missing)."
        )


def read_data(
    path: str | Path,
    columns: Sequence[str] | None = None,
    *,
    index_col: str | None = None,
    drop_missing: bool = False,
    na_values: Sequence[str] = (),
    text_columns: bool = False,
) -> tuple[Any, dict[str, Any], list[str]]:
    """Read a CSV or Parquet file and select the numeric columns to fit.

    Parameters
    ----------
    path : str or pathlib.Path
        A CSV file (``.csv``, ``.tsv``, ``.txt``, optionally compressed) with a header row,
        or a Parquet file (``.parquet``, ``.pq``).
    columns : sequence of str, optional
        Columns to use; default every numeric column (the others are reported).
    index_col : str, optional
        Column holding row names. An unnamed first column of a CSV (as written by
        ``DataFrame.to_csv``) is taken as row names automatically.
    drop_missing : bool
        Drop rows with missing values in the used columns instead of failing.
    na_values : sequence of str
        Cell values that mean "missing" besides empty cells and ``NA``/``NaN`` (e.g.
        ``"?"``); a numeric column holding any other text is refused.
    text_columns : bool
        Keep text (and boolean) columns too, as text: the category families fit them
        (``--family bernoulli``, ``categorical`` or ``auto``).

    Notes
    -----
    A CSV's separator (comma, semicolon, tab or ``|``) is the one its header row holds
    most often; with a separator other than a comma, numbers written with a decimal comma
    (``5,1``) are read as such. A column whose cells are mostly numbers but holds some
    text is an error naming the column, the line and the value.

    Returns
    -------
    frame : pandas.DataFrame
        The columns to fit, all numeric (numbers or text with ``text_columns``).
    info : dict
        What was read, for the report (file, rows and columns used or dropped).
    messages : list of str
        Notes for the user (dropped columns, the row-name column, dropped rows).
    """
    import pandas as pd

    path = Path(path)
    kind = _file_kind(path)
    messages: list[str] = []
    info: dict[str, Any] = {"file": str(path)}
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = _read_csv(path, kind, list(na_values), info, messages)
    except ImportError as exc:
        raise _InputError(f"reading '{path}' needs pyarrow: {exc}") from None
    except _InputError:
        raise
    except Exception as exc:  # pandas / pyarrow parse errors of every kind
        raise _InputError(f"could not read '{path}' as {kind.upper()}: {_one_line(exc)}") from None
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise _InputError(
            f"'{path}' holds no data ({frame.shape[0]} rows, {frame.shape[1]} "
            "columns); a header row and at least one data row are needed."
        )
    frame.columns = [str(c) for c in frame.columns]
    if index_col is not None:
        if index_col not in frame.columns:
            raise _InputError(
                f"--index-col {index_col!r} is not a column of '{path}'; columns: "
                f"{', '.join(frame.columns)}."
            )
        frame = frame.set_index(index_col)
        info["row names"] = f"column {index_col!r}"
    elif kind != "parquet" and frame.columns[0].startswith("Unnamed: 0"):
        frame = frame.set_index(frame.columns[0])
        frame.index.name = None
        messages.append("the unnamed first column was taken as row names (an index column).")
        info["row names"] = "the unnamed first column"

    if columns is None:
        _check_mostly_numeric(frame, path)
        numeric = frame if text_columns else frame.select_dtypes("number")
        dropped = [c for c in frame.columns if c not in numeric.columns]
        if numeric.shape[1] == 0:
            raise _InputError(
                f"'{path}' has no numeric columns (columns: {', '.join(frame.columns)}); "
                "encode the data as numbers, or check the separator and the header row."
            )
        if dropped:
            messages.append(
                f"non-numeric column(s) {', '.join(dropped)} not used; choose columns "
                "with --columns."
            )
            info["columns not used (non-numeric)"] = ", ".join(dropped)
        frame = numeric
    else:
        unknown = [c for c in columns if c not in frame.columns]
        if unknown:
            raise _InputError(
                f"--columns names {', '.join(map(repr, unknown))}, not found in '{path}'; "
                f"its columns are {', '.join(frame.columns)}."
            )
        frame = frame[list(columns)]
        bad = {c: str(frame[c].dtype) for c in frame.columns}
        bad = {
            c: d
            for c, d in bad.items()
            if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
        }
        if bad and not text_columns:
            examples = []
            for column in bad:
                values = pd.to_numeric(frame[column], errors="coerce")
                offending = frame[column][values.isna() & frame[column].notna()]
                if len(offending):
                    examples.append(f"{column!r} (e.g. {str(offending.iloc[0])!r})")
                else:
                    examples.append(f"{column!r} ({bad[column]})")
            raise _InputError(
                f"column(s) {', '.join(examples)} are not numeric; bayesmix fits numeric "
                "columns only — encode them as numbers or leave them out of --columns."
            )
    numbers = frame.select_dtypes("number").columns
    frame = frame.astype(dict.fromkeys(numbers, "float64"))
    missing = frame.isna()
    if missing.to_numpy().any():
        per_column = missing.sum()
        where = ", ".join(f"{c}: {int(n)}" for c, n in per_column.items() if n)
        n_rows = int(missing.any(axis=1).sum())
        if not drop_missing:
            raise _InputError(
                f"'{path}' has missing values in {n_rows} row(s) ({where}); drop those rows "
                "with --drop-missing, or impute them before fitting."
            )
        frame = frame[~missing.any(axis=1)]
        messages.append(f"dropped {n_rows} row(s) with missing values ({where}).")
        info["rows dropped (missing values)"] = n_rows
        if frame.shape[0] == 0:
            raise _InputError(f"every row of '{path}' has a missing value; nothing is left.")
    info["columns used"] = ", ".join(frame.columns)
    return frame, info, messages


def _warn(message: str) -> None:
    click.echo(f"Warning: {message}", err=True)


def _echo_messages(messages: Sequence[str]) -> None:
    for message in messages:
        click.echo(f"Note: {message}", err=True)


# -- fitting -----------------------------------------------------------------------------
def _quiet_libraries(verbose: bool) -> None:
    """Keep PyMC's and PyTensor's log lines out of the terminal unless asked for."""
    if verbose:
        return
    for name in ("pymc", "pytensor", "nutpie"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _use_agg() -> None:
    import matplotlib

    matplotlib.use("Agg")


def method_options(
    methods: Sequence[str],
    *,
    draws: int,
    tune: int,
    chains: int,
    target_accept: float,
    n_init: int,
    seed: int,
    progress: bool,
    mass_matrix: str = "auto",
) -> dict[str, dict[str, Any]]:
    """The fit options of each method from the command-line settings."""
    options: dict[str, dict[str, Any]] = {}
    for method in methods:
        if method in ("em", "map"):
            options[method] = {"n_init": n_init, "random_state": seed}
            continue
        if method == "vb":  # closed form: no progress bar; restarts as EM's
            options[method] = {"draws": draws, "n_init": n_init, "random_state": seed}
            continue
        options[method] = {"draws": draws, "random_state": seed, "progressbar": progress}
        if method in ("gibbs", "nuts"):  # MCMC: chains and their tuning or burn-in
            options[method].update(tune=tune, chains=chains)
        if method == "nuts":
            options[method].update(target_accept=target_accept, mass_matrix=mass_matrix)
    return options


def _seed(seed: int | None) -> int:
    import numpy as np

    return (
        int(np.random.SeedSequence().generate_state(1)[0] % (2**31 - 1)) if seed is None else seed
    )


def _command_line() -> str:
    return shlex.join(["bayesmix", *sys.argv[1:]])


# -- shared options -------------------------------------------------------------------------
def _data_options(function: Callable) -> Callable:
    function = click.option(
        "--na-values",
        metavar="A,B,...",
        callback=lambda ctx, param, value: (
            [] if value is None else [v.strip() for v in value.split(",") if v.strip()]
        ),
        help="Comma-separated cell values that mean missing (e.g. '?'), besides empty cells "
        "and NA/NaN.",
    )(function)
    function = click.option(
        "--drop-missing",
        is_flag=True,
        help="Drop rows with missing values in the used columns (default: stop with an error).",
    )(function)
    function = click.option(
        "--index-col",
        metavar="NAME",
        help="Column with row names (not fitted). An unnamed first CSV column is used "
        "automatically.",
    )(function)
    function = click.option(
        "--columns",
        metavar="A,B,...",
        callback=lambda ctx, param, value: (
            None if value is None else [c.strip() for c in value.split(",") if c.strip()] or None
        ),
        help="Comma-separated columns to fit (default: every numeric column).",
    )(function)
    return function


def _sampler_options(function: Callable) -> Callable:
    for decorator in reversed(
        [
            click.option(
                "--draws",
                type=click.IntRange(min=1),
                default=1000,
                show_default=True,
                help="Posterior draws per chain (gibbs, nuts) or from the approximation (advi).",
            ),
            click.option(
                "--tune",
                type=click.IntRange(min=0),
                default=1000,
                show_default=True,
                help="Tuning steps (nuts) or discarded burn-in sweeps (gibbs) per chain.",
            ),
            click.option(
                "--chains",
                type=click.IntRange(min=1),
                default=4,
                show_default=True,
                help="MCMC chains (gibbs, nuts).",
            ),
            click.option(
                "--target-accept",
                type=click.FloatRange(0, 1, min_open=True, max_open=True),
                default=0.8,
                show_default=True,
                help="NUTS target acceptance rate (raise it, e.g. 0.95, against divergences).",
            ),
            click.option(
                "--mass-matrix",
                type=click.Choice(["auto", "diag", "low_rank"]),
                default="auto",
                show_default=True,
                help="NUTS mass matrix: auto is low_rank for 2+ features, diag in 1-D.",
            ),
            click.option(
                "--n-init",
                type=click.IntRange(min=1),
                default=5,
                show_default=True,
                help="EM starts: a hierarchical one (mclust's), the rest k-means++; the best "
                "that is not a spurious maximum is kept.",
            ),
            click.option(
                "--seed",
                type=click.IntRange(min=0),
                default=None,
                help="Random seed (default: a fresh one, printed so the run can be repeated).",
            ),
            click.option("--progress", is_flag=True, help="Show the samplers' progress bars."),
        ]
    ):
        function = decorator(function)
    return function


DATA_ARGUMENT = click.argument(
    "data", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)
)


# -- the commands ---------------------------------------------------------------------------
def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("bayesmix")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        import bayesmix

        return bayesmix.__version__


@click.group(
    "bayesmix",
    cls=_Group,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  bayesmix demo
  bayesmix fit data.csv --components 3 --method em,nuts --out results
  bayesmix fit counts.csv --components 2 --family poisson --method em,nuts
  bayesmix select data.parquet --components 1-6 --covariance full,diag
""",
)
@click.version_option(_version(), "--version", prog_name="bayesmix")
@click.option("--traceback", is_flag=True, help="Show the Python traceback when a command fails.")
@click.option("--verbose", is_flag=True, help="Show the log messages of PyMC and PyTensor.")
@click.pass_context
def cli(ctx: click.Context, traceback: bool, verbose: bool) -> None:
    """Bayesian mixtures (Gaussian, Student-t, Poisson, negative binomial) from the command line.

    Fit a mixture by EM, NUTS or ADVI and write a report (fit), choose the number of
    components (select), or run the showcase on the Old Faithful data (demo).
    Run 'bayesmix COMMAND --help' for the options of each command.
    """
    _quiet_libraries(verbose)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.command(
    epilog="""\b
Examples:
  bayesmix fit data.csv --components 3
  bayesmix fit data.csv -k 2 --method em,nuts --covariance diag --out results
  bayesmix fit data.parquet -k 2 --columns height,weight --method nuts --draws 2000
  bayesmix fit counts.csv -k 2 --family negative_binomial --method em,map,nuts
  bayesmix fit data.csv -k 2 --family student_t --covariance diag --method em,map
"""
)
@DATA_ARGUMENT
@click.option(
    "-k",
    "--components",
    type=click.IntRange(min=1),
    required=True,
    help="Number of mixture components K (choose it with 'bayesmix select').",
)
@click.option(
    "--family",
    type=click.Choice(("gaussian", *FAMILY_NAMES), case_sensitive=False),
    default="gaussian",
    show_default=True,
    help="Component family: gaussian (every method); student_t (heavy tails), poisson or "
    "negative_binomial (counts): em, map, nuts, advi, fullrank_advi; bernoulli or "
    "categorical (text, category and 0/1 columns: latent class analysis): the same; auto: "
    "chosen from the columns (gaussian for numbers, bernoulli for two categories each, "
    "else categorical).",
)
@click.option(
    "--covariance",
    type=click.Choice((*COVARIANCE_TYPES, *MCLUST_NAMES), case_sensitive=False),
    default=None,
    help="Covariance structure of Gaussian components (also mclust's names: EII, VII, "
    "..., VEV, VVV), or scale structure of Student-t ones (full or diag) [default: full].",
)
@click.option(
    "--method",
    "methods",
    type=_ChoiceList(FIT_METHODS, "method"),
    default="em",
    show_default=True,
    help="Inference method(s), comma-separated: em (maximum likelihood), map (MAP-EM), "
    "gibbs (conjugate Gibbs sampler for Gaussians: the MCMC that mixes on real data), "
    "nuts (MCMC), advi, fullrank_advi (variational, PyMC), vb (closed-form variational "
    "Bayes: Gaussians with full, tied, diag or spherical covariances, the poisson, "
    "bernoulli and categorical families and their mixes, student_t with --covariance diag).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the results (default: DATA's name + '-bayesmix' in the current directory).",
)
@click.option(
    "--ci-prob",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.94,
    show_default=True,
    help="Probability mass of the credible intervals.",
)
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots (faster).")
@_data_options
@_sampler_options
def fit(
    data: Path,
    components: int,
    family: str,
    covariance: str | None,
    methods: list[str],
    out: Path | None,
    ci_prob: float,
    no_plots: bool,
    columns: list[str] | None,
    index_col: str | None,
    drop_missing: bool,
    na_values: list[str],
    draws: int,
    tune: int,
    chains: int,
    target_accept: float,
    mass_matrix: str,
    n_init: int,
    seed: int | None,
    progress: bool,
) -> None:
    """Fit a K-component mixture to DATA and write a report.

    The components are Gaussian unless --family names another family: student_t
    (robust to outliers), poisson or negative_binomial (counts; every column a count,
    independent given the component), bernoulli or categorical (text, category or 0/1
    columns, each a set of categories: latent class analysis), or auto (chosen from the
    columns, and shown). DATA is a CSV file with a header row or a Parquet
    file. Writes into --out:
    summary.csv (one row per method and parameter), <method>.nc (the result as a
    netCDF DataTree; read it with bayesmix.results.io.load), PNG plots and report.html, a
    self-contained page with every table and plot. Each <method>.nc is written as soon
    as that fit is done, so a later fit that fails or is interrupted loses nothing
    finished.
    """
    from bayesmix.viz.report import feature_ranking, fit_methods, write_report

    family = family.lower()
    if family != "auto":  # usage errors before the data are read
        model, structure = _declaration(components, family, covariance, methods, mass_matrix)
    frame, info, messages = read_data(
        data,
        columns,
        index_col=index_col,
        drop_missing=drop_missing,
        na_values=na_values,
        text_columns=family in TEXT_FAMILIES,
    )
    _echo_messages(messages)
    if family == "auto":
        chosen = _auto_family(components, frame, info)
        family = chosen.name
        model, structure = _declaration(
            components, family, covariance, methods, mass_matrix, chosen
        )
    if components > frame.shape[0]:
        raise click.BadParameter(
            f"{components} components for {frame.shape[0]} observations; K must be at most "
            "the number of rows.",
            param_hint="'--components'",
        )
    if family != "gaussian":
        try:  # the family's support (counts for count families), before any fit
            model.check_data(frame)
        except ValueError as exc:
            raise _InputError(f"{exc} (--family {family})") from None
    coded = _coded(frame) if family in TEXT_FAMILIES else frame
    seed = _seed(seed)
    click.echo(
        f"Data: {frame.shape[0]} observations of {frame.shape[1]} feature(s) "
        f"({', '.join(frame.columns)}) from {data}"
    )
    options = method_options(
        methods,
        draws=draws,
        tune=tune,
        chains=chains,
        target_accept=target_accept,
        mass_matrix=mass_matrix,
        n_init=n_init,
        seed=seed,
        progress=progress,
    )
    if family != "gaussian":  # the options a family's fits take (no NUTS mass matrix)
        options = {
            m: {k: v for k, v in o.items() if k in model.fit_options(m)} for m, o in options.items()
        }
    click.echo(f"Model: {model!r}; seed {seed}")
    out = Path(f"{data.name.split('.')[0]}-bayesmix") if out is None else out
    if out.exists() and not out.is_dir():
        raise click.BadParameter(f"{out} is a file; give a directory.", param_hint="'--out'")

    def save_now(method: str, result: Any) -> None:
        """Each fit is saved as soon as it is done: a later fit that fails or is
        interrupted loses nothing finished (the report rewrites the file at the end)."""
        out.mkdir(parents=True, exist_ok=True)
        result.save(out / f"{method}.nc")
        click.echo(f"  saved {out / f'{method}.nc'}")

    results, fit_warnings = fit_methods(
        frame, model, methods, options, echo=click.echo, warn=_warn, on_result=save_now
    )
    for method, result in results.items():
        if hasattr(result, "diagnose"):  # posterior draws: say what to do about problems
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                problems = result.diagnose()
            for message, _ in problems:
                _warn(f"({method}) {message}")
    _use_agg()
    click.echo(f"Writing the report to {out}/ ...")
    files = write_report(
        results,
        coded,
        out,
        title=f"bayesmix: {components}-component {structure} mixture of {data.name}",
        data_info=info,
        fit_warnings=fit_warnings,
        plots=not no_plots,
        ci_prob=ci_prob,
        command=_command_line(),
    )
    location = "means" if "means" in model.parameter_names else model.parameter_names[1]
    first = next(iter(results.values()))
    _echo_estimates(files.summary, feature_ranking(first, coded), location)
    for line in files.lines():
        click.echo(line)


def _auto_family(components: int, frame: Any, info: dict[str, Any]) -> Any:
    """The family ``--family auto`` fits to ``frame`` (echoing each column's kind, and
    recording them in the report's ``info``); mixed column kinds are an input error."""
    from bayesmix.mixture import Mixture

    try:
        chosen, mapping = Mixture(components, "auto").resolve_family(frame)
    except (TypeError, ValueError) as exc:
        raise _InputError(f"{_one_line(exc)} (--family auto)") from None
    name = chosen.name
    kinds = "; ".join(f"{column}: {kind}" for column, kind in mapping.items())
    click.echo(f"Family (auto): {name} ({kinds})")
    info["family (auto)"] = f"{name} ({kinds})"
    return chosen


def _coded(frame: Any) -> Any:
    """``frame`` with text columns as their category codes (the numbers the category
    families fit, which the report draws)."""
    import pandas as pd

    from bayesmix.data import as_data

    data = as_data(frame, categories="infer", allow_missing=True)
    return pd.DataFrame(data.values, index=frame.index, columns=frame.columns)


def _declaration(
    components: int,
    family: str,
    covariance: str | None,
    methods: list[str],
    mass_matrix: str,
    chosen: Any = None,
) -> tuple[Any, str]:
    """The declaration ``fit`` fits, and its words for the title (``"full"``,
    ``"poisson"``, ``"student_t (diag)"``); a combination of options that cannot work is
    a one-line usage error naming what works. ``chosen``: the family object ``--family
    auto`` resolved (named ``family``), used as it is."""
    from bayesmix.viz.report import supported_methods

    if family == "gaussian":
        from bayesmix.model import GaussianMixture

        covariance = _covariance_name(covariance or "full")
        return GaussianMixture(components, covariance), covariance
    from bayesmix.families import FAMILIES
    from bayesmix.mixture import Mixture

    if family == "student_t":
        from bayesmix.families.student_t import COVARIANCE_TYPES as T_TYPES

        covariance = (covariance or "full").lower()
        if covariance not in T_TYPES:
            raise click.BadParameter(
                f"the student_t family takes --covariance {' or '.join(T_TYPES)}; got "
                f"{covariance!r}.",
                param_hint="'--covariance'",
            )
        model = Mixture(components, FAMILIES[family](covariance_type=covariance))
        structure = f"student_t ({covariance})"
    else:
        if covariance is not None:
            raise click.BadParameter(
                f"only the gaussian and student_t families take a covariance structure; the "
                f"{family} family has one parameter set per column (leave --covariance out).",
                param_hint="'--covariance'",
            )
        model = Mixture(components, FAMILIES[family]() if chosen is None else chosen)
        structure = family
    allowed = supported_methods(model)
    unsupported = [m for m in methods if m not in allowed]
    if unsupported:
        raise click.BadParameter(
            f"{', '.join(unsupported)} cannot fit the {family} family; it supports "
            f"{', '.join(allowed)}.",
            param_hint="'--method'",
        )
    if mass_matrix != "auto" and "nuts" in methods:
        raise click.BadParameter(
            f"--mass-matrix applies to Gaussian NUTS fits; the {family} family's NUTS uses "
            "PyMC's adapted diagonal mass matrix (leave --mass-matrix out).",
            param_hint="'--mass-matrix'",
        )
    return model, structure


def _echo_estimates(summary_path: Path, ranking: Any, location: str = "means") -> None:
    """The weights and the component locations (``means``; Poisson's ``rates``) in the
    most separating features, fit by fit; the rest is in ``summary.csv``."""
    import pandas as pd

    table = pd.read_csv(summary_path)
    wide = table.pivot(index="parameter", columns="method", values="estimate")
    wide = wide.reindex(
        index=list(dict.fromkeys(table["parameter"])), columns=list(dict.fromkeys(table["method"]))
    )
    wide.columns.name = None
    n_components = int(wide.index.str.startswith("weights[").sum())
    n_features = max(1, (MAX_CONSOLE_ROWS - n_components) // n_components)
    features = list(ranking.index[:n_features])
    means = {f"{location}[{k}, {f}]" for k in range(n_components) for f in features}
    shown = wide[wide.index.str.startswith("weights[") | wide.index.isin(means)]
    which = f"the weights and {location}"
    if len(features) < len(ranking):
        which = (
            f"the weights, and the {location} in the {len(features)} of {len(ranking)} "
            "features that separate the components most"
        )
    click.echo(
        f"\nEstimates of {which} (EM/MAP: point estimate; otherwise posterior mean); "
        f"all {len(wide)} parameters, with intervals and diagnostics, are in {summary_path}:"
    )
    click.echo(shown.to_string(float_format=lambda v: f"{v:.4g}", na_rep=""))
    click.echo("")


@cli.command(
    epilog="""\b
Examples:
  bayesmix select data.csv
  bayesmix select data.csv --components 1-8 --covariance full,diag,tied --out selection.csv
  bayesmix select data.csv --components 1-9 --covariance all --plot bic.png
  bayesmix select data.csv --components 2,3,4 --method em,nuts --draws 500
  bayesmix select counts.csv --components 1-4 --family poisson,negative_binomial
"""
)
@DATA_ARGUMENT
@click.option(
    "-k",
    "--components",
    type=_ComponentList(),
    default="1-6",
    show_default=True,
    help="Numbers of components to try: a range (1-6), a list (2,3,5) or both (1-3,6).",
)
@click.option(
    "--covariance",
    "covariances",
    type=_CovarianceList(),
    default=None,
    help="Gaussian covariance structure(s), comma-separated: full, diag, spherical, tied, "
    "mclust's names (EII, VII, EEI, VEI, EVI, VVI, EEE, VEE, EVE, VVE, EEV, VEV, EVV, VVV; "
    "any case) or all (mclust's 14, printed as mclust's BIC table and top 3) [default: "
    "full, or none when --family is given].",
)
@click.option(
    "--family",
    "families",
    type=_ChoiceList(SELECT_FAMILY_NAMES, "family"),
    default=None,
    help="Other component families to compare, comma-separated: poisson, negative_binomial "
    "(counts), student_t (heavy tails); compared by the same criteria.",
)
@click.option(
    "--method",
    "methods",
    type=_ChoiceList(FIT_METHODS, "method"),
    default="em",
    show_default=True,
    help="Method(s), comma-separated: EM methods are compared by BIC/AIC/ICL, gibbs, nuts, "
    "advi and vb by PSIS-LOO.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the full table to this CSV file.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw the selection curve to this PNG file.",
)
@_data_options
@_sampler_options
def select(
    data: Path,
    components: list[int],
    covariances: list[str] | None,
    families: list[str] | None,
    methods: list[str],
    out: Path | None,
    plot: Path | None,
    columns: list[str] | None,
    index_col: str | None,
    drop_missing: bool,
    na_values: list[str],
    draws: int,
    tune: int,
    chains: int,
    target_accept: float,
    mass_matrix: str,
    n_init: int,
    seed: int | None,
    progress: bool,
) -> None:
    """Compare mixtures with different numbers of components on DATA.

    Fits every combination of K, covariance structure and method, and prints the
    model-selection table: BIC, AIC and ICL for EM fits (lower is better), PSIS-LOO for
    posterior fits (higher elpd is better), with the best model of each method marked.
    """
    from bayesmix.analysis.selection import select_components
    from bayesmix.exceptions import BayesmixWarning
    from bayesmix.families import FAMILIES

    frame, _, messages = read_data(
        data, columns, index_col=index_col, drop_missing=drop_missing, na_values=na_values
    )
    _echo_messages(messages)
    if components[-1] > frame.shape[0]:
        raise click.BadParameter(
            f"K up to {components[-1]} for {frame.shape[0]} observations; K must be at most "
            "the number of rows.",
            param_hint="'--components'",
        )
    seed = _seed(seed)
    options = method_options(
        methods,
        draws=draws,
        tune=tune,
        chains=chains,
        target_accept=target_accept,
        mass_matrix=mass_matrix,
        n_init=n_init,
        seed=seed,
        progress=progress,
    )
    fit_options = {
        m: {k: v for k, v in o.items() if k not in ("random_state", "n_init")}
        for m, o in options.items()
    }
    # --covariance all is mclust's 14 models (2 on one column)
    gaussian = [n for c in covariances or () for n in (MCLUST_NAMES if c == "all" else [c])]
    gaussian = list(dict.fromkeys(gaussian))
    if "all" in (covariances or ()) and frame.shape[1] == 1:
        gaussian = ["EII", "VII"]
    declarations = (len(gaussian) if gaussian else 0 if families else 1) + len(families or ())
    n_fits = len(components) * declarations * len(methods)
    click.echo(
        f"Data: {frame.shape[0]} observations of {frame.shape[1]} feature(s) "
        f"({', '.join(frame.columns)}); {n_fits} fits, seed {seed} ...",
        err=True,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BayesmixWarning)
        selection = select_components(
            frame,
            components,
            covariance_types=covariances,
            methods=methods,
            families=[FAMILIES[name]() for name in families or ()],
            n_init=n_init,
            random_state=seed,
            fit_options=fit_options,
        )
    for message in dict.fromkeys(
        _one_line(w.message) for w in caught if issubclass(w.category, BayesmixWarning)
    ):
        click.echo(f"Warning: {message}", err=True)
    text = repr(selection)
    click.echo(text)
    em = any(m in ("em", "map") for m in methods)
    if em and len(gaussian) > 1 and "Best BIC values" not in text:
        # with more than the four basic models the repr shows mclust's top 3 already
        click.echo("\n" + selection.mclust_summary())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        selection.table.to_csv(out)
        click.echo(f"\ntable: {out}")
    if plot is not None:
        _use_agg()
        import matplotlib.pyplot as plt

        plot.parent.mkdir(parents=True, exist_ok=True)
        # mclust's BIC plot for more than the four basic structures or --covariance all
        mclust_grid = len(gaussian) > len(COVARIANCE_TYPES) or "all" in (covariances or ())
        ax = selection.plot(kind="bic" if em and mclust_grid else "curve")
        ax.figure.savefig(plot, dpi=110, bbox_inches="tight")
        plt.close(ax.figure)
        click.echo(f"plot: {plot}")


@cli.command(
    epilog="""\b
Examples:
  bayesmix demo
  bayesmix demo --out faithful-report --quick
"""
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-report"),
    show_default=True,
    help="Directory for the report.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="EM, VB and a short NUTS run only (2 chains x 300 draws; no Gibbs and no ADVI, whose "
    "first fit on a machine compiles PyMC's model).",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed."
)
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
def demo(out: Path, quick: bool, seed: int, no_plots: bool) -> None:
    """Run the showcase on the shipped Old Faithful data.

    Chooses K by BIC over EM fits with 1-4 components, then fits the chosen
    full-covariance mixture (K=2) by EM, VB, Gibbs, NUTS and ADVI, compares them, and writes the
    report (as 'bayesmix fit' does) into --out.
    """
    from bayesmix.demo import run_demo

    _use_agg()
    files = run_demo(out, quick=quick, seed=seed, plots=not no_plots, echo=click.echo)
    click.echo(f"\nOpen the report: {files.html.resolve()}")


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``bayesmix`` console script."""
    cli.main(args=args, prog_name="bayesmix")


if __name__ == "__main__":  # pragma: no cover
    main()
