"""What every ``rxroute`` command shares: its consoles and the one-line error handling.

A module of its own so that command groups living in their feature packages (e.g.
``rxroute.apiclients.cli``) can use it without importing ``rxroute.cli``, which imports
them: that cycle broke ``python -m rxroute.cli``.
"""

from __future__ import annotations

import errno
import functools
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    # Settings, the database layer and their error types are imported when a command runs,
    # not when the CLI loads: ``rxroute --help`` stays quick (no pydantic models, SQLAlchemy
    # or cryptography to import).
    from pydantic import ValidationError

    from rxroute.config import Settings

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


class CliError(Exception):
    """A problem the user can fix; printed as one line."""


def _settings_error_line(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = "_".join(str(part) for part in error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if location:
            parts.append(f"RXROUTE_{location.upper()}: {message}")
        else:
            parts.append(message)
    return "; ".join(parts)


def _database_error_line(exc: BaseException) -> str | None:
    import psycopg
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, psycopg.OperationalError | OperationalError):
        return (
            "cannot reach the database set in RXROUTE_DATABASE_URL "
            "(is the server running and the address right?)"
        )
    if isinstance(exc, DBAPIError):
        return f"database error ({type(exc.orig).__name__}); run `rxroute migrate` first?"
    return None


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from pydantic import ValidationError

        from rxroute.crypto import DecryptionError, EncryptionKeyError
        from rxroute.db.embedded import EmbeddedDatabaseError
        from rxroute.db.engine import DatabaseConfigError
        from rxroute.db.wait import DatabaseNotReady

        try:
            return func(*args, **kwargs)
        except ValidationError as exc:
            line = _settings_error_line(exc)
        except (
            CliError,
            EmbeddedDatabaseError,
            DatabaseConfigError,
            EncryptionKeyError,
            DecryptionError,
            DatabaseNotReady,
        ) as exc:
            line = str(exc)
        except KeyboardInterrupt:
            err_console.print("stopped")
            raise typer.Exit(130) from None
        except Exception as exc:
            line_or_none = _database_error_line(exc)
            if line_or_none is None:
                raise
            line = line_or_none
        err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)

    return wrapper


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and ``.env``, with command-line overrides on top."""
    from rxroute.config import Settings, get_settings

    get_settings.cache_clear()
    if overrides:
        return Settings(**overrides)
    return get_settings()


def require_encryption_keys(settings: Settings) -> None:
    """Fail fast on missing or malformed RXROUTE_ENCRYPTION_KEYS, before touching the database."""
    from rxroute.crypto import SecretBox

    SecretBox.from_settings(settings)


def ensure_port_free(host: str, port: int, what: str, flag: str | None = "--port") -> None:
    """Fail with one line if ``port`` is taken; ``flag`` is the option that moves it, if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers themselves do: a just-closed connection (TIME_WAIT) is not "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fix = f" or pass another {flag}" if flag else ""
                raise CliError(
                    f"{what} port {host}:{port} is already in use; stop whatever uses it{fix}"
                ) from exc
            raise CliError(f"cannot listen on {host}:{port} for {what}: {exc.strerror}") from exc
