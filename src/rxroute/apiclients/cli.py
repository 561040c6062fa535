"""``rxroute apikey``: make, list, revoke and rotate integrating platforms' API keys.

The same service as the admin pages (:mod:`rxroute.apiclients.service`), so the rules are
one. A new or rotated key is printed once and never again (only its hash is stored). A
request that cannot be done (an unknown scope, a taken or unknown name) is one line on
stderr naming the field, exit status 2, like any other usage error; database and
configuration problems are handled as by every other command (one line, exit status 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape

from rxroute.apiclients.scopes import Scope, parse_scopes
from rxroute.cli_support import console, err_console, friendly_errors, load_settings

if TYPE_CHECKING:
    # The database side is imported where a command runs, so ``rxroute --help`` stays fast.
    from sqlalchemy.ext.asyncio import AsyncSession

    from rxroute.apiclients import service

app = typer.Typer(
    name="apikey",
    help="API keys of integrating platforms: create, list, revoke, rotate.",
    no_args_is_help=True,
)

T = TypeVar("T")

#: The exit status of a request that cannot be done as asked (as for a usage error).
INPUT_ERROR = 2


def _refuse(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(INPUT_ERROR)


def _in_transaction(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction against the configured database."""
    from rxroute.apiclients import service
    from rxroute.db.engine import create_engine, create_sessionmaker, resolve_database_url

    settings = load_settings()
    url = resolve_database_url(settings)

    async def run() -> T:
        engine = create_engine(url, pool_size=1)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except service.ApiClientError as exc:
        raise _refuse(exc.message) from None


def _print_key(issued: service.IssuedKey, done: str) -> None:
    client = issued.client
    console.print(f"API client {escape(client.name)!r} {done}.", highlight=False)
    console.print(f"  prefix: {client.key_prefix}", highlight=False)
    console.print(f"  scopes: {', '.join(client.scopes)}", highlight=False)
    console.print(
        "Its key, shown this once (only a hash is kept; store it in the platform's secrets now):",
        highlight=False,
    )
    console.print(issued.plain_key, highlight=False, soft_wrap=True)


@app.command()
@friendly_errors
def create(
    name: Annotated[str, typer.Option("--name", help="A name for the platform or service.")],
    scopes: Annotated[
        str,
        typer.Option(
            "--scopes",
            help=f"Comma-separated scopes: {', '.join(s.value for s in Scope)}.",
        ),
    ],
) -> None:
    """Create an API client and print its key, once."""
    try:
        chosen = parse_scopes(scopes)
    except ValueError as exc:
        raise _refuse(f"scopes: {exc}") from None
    from rxroute.apiclients import service

    async def work(session: AsyncSession) -> service.IssuedKey:
        return await service.create_client(session, name=name, scopes=chosen)

    _print_key(_in_transaction(work), "created")


@app.command("list")
@friendly_errors
def list_() -> None:
    """List the API clients: prefix, scopes, when made, last used, revoked."""
    from rich.table import Table

    from rxroute.apiclients import service
    from rxroute.timezones import format_display

    zone = load_settings().display_zone
    clients = _in_transaction(service.list_clients)
    if not clients:
        console.print("No API clients yet: create one with `rxroute apikey create`.")
        return
    table = Table("name", "prefix")
    # Scopes are what people read the list for: never cut short.
    table.add_column("scopes", min_width=max(len(scope.value) for scope in Scope))
    for heading in ("created", "last used", "revoked"):
        table.add_column(heading)
    for client in clients:
        table.add_row(
            escape(client.name),
            client.key_prefix,
            "\n".join(client.scopes),
            format_display(client.created_at, zone),
            format_display(client.last_used_at, zone) if client.last_used_at else "never",
            format_display(client.revoked_at, zone) if client.revoked_at else "no",
        )
    console.print(table)


@app.command()
@friendly_errors
def revoke(name: Annotated[str, typer.Argument(help="The API client's name.")]) -> None:
    """Revoke an API client's key: its next request gets 401."""
    from rxroute.apiclients import service

    async def work(session: AsyncSession) -> bool:
        found = await service.find_by_name(session, name)
        already = found is not None and found.revoked_at is not None
        await service.revoke_client(session, name)
        return already

    already = _in_transaction(work)
    state = "was already revoked" if already else "revoked: its key stops working now"
    console.print(f"API client {escape(name.strip())!r} {state}.", highlight=False)


@app.command()
@friendly_errors
def rotate(name: Annotated[str, typer.Argument(help="The API client's name.")]) -> None:
    """Give an API client a new key (same scopes); the old key stops working at once."""
    from rxroute.apiclients import service

    async def work(session: AsyncSession) -> service.IssuedKey:
        return await service.rotate_client(session, name)

    _print_key(_in_transaction(work), "has a new key; the old one stopped working")
