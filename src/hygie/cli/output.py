"""How the CLI talks to people: Rich console, coloured errors, exit codes (0 ok, 1 user error, 2 internal)."""

from __future__ import annotations

import datetime as dt
import functools
import json
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from hygie.config import Settings
from hygie.errors import HygieError

EXIT_OK, EXIT_USER_ERROR, EXIT_INTERNAL_ERROR = 0, 1, 2

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # messages stay one line per problem, for logs and grep

P = ParamSpec("P")
R = TypeVar("R")


def settings() -> Settings:
    return Settings.from_env()


def fail(message: str) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(EXIT_USER_ERROR)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn hygie's user errors into exit code 1 and anything unexpected into exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except HygieError as e:
            err_console.print("[bold red]error:[/]", str(e), highlight=False, markup=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None
        except Exception as e:
            if "AES tag" in str(e):  # DuckDB: an encrypted file failed authentication
                err_console.print(
                    "[bold red]error:[/] an encrypted file failed authentication (AES-GCM): it was damaged or "
                    "tampered with; `hygie release verify NAME` names the file",
                    highlight=False,
                )
                raise typer.Exit(EXIT_USER_ERROR) from None
            err_console.print("[bold red]internal error[/] (a bug in hygie; please report it):")
            err_console.print(traceback.format_exc(), highlight=False, markup=False)
            raise typer.Exit(EXIT_INTERNAL_ERROR) from None

    return wrapper


def parse_day(value: str, option: str) -> dt.date:
    """A date option's value (YYYY-MM-DD), or an error naming the option."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise HygieError(f"{option} takes a date YYYY-MM-DD, not {value!r}") from None


def warn(message: str) -> None:
    """A warning, one line whatever the terminal width (logs and grep find it whole)."""
    console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")


@contextmanager
def progress(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner with the current step; yields a function to announce each step."""
    if not enabled or not err_console.is_terminal:
        yield lambda _step: None
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)
        yield lambda step: bar.update(task, description=step)
