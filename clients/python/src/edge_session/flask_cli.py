"""``flask edge-session ...``: the Flask CLI commands ``init_app`` adds.

- ``flask edge-session import [--dry-run]`` moves every live session of the legacy store
  (``EDGE_SESSION_LEGACY_*``) ahead of time, idempotently (:mod:`edge_session.migration`);
- ``flask edge-session list USER`` lists a user's live sessions by handle;
- ``flask edge-session end USER (--handle H | --all-except H | --all)`` ends sessions.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from .companion import CompanionError
from .flask import EdgeSessionInterface
from .operations import OperatorError, end_sessions, session_table
from .secret_rules import ConfigError

__all__ = ["cli"]

cli = AppGroup("edge-session", help="edge-session: move legacy sessions; list and end a user's sessions.")


def _interface() -> EdgeSessionInterface:
    interface = current_app.session_interface
    if not isinstance(interface, EdgeSessionInterface):
        raise click.ClickException(
            "the app's session interface is not edge-session's: call edge_session.flask.init_app(app)"
        )
    return interface


@cli.command("import")
@click.option("--dry-run", is_flag=True, help="Count what would move; write nothing.")
@click.option(
    "--progress-every", type=click.IntRange(min=1), default=1000, metavar="N", help="A progress line every N sessions."
)
def import_command(dry_run: bool, progress_every: int) -> None:
    """Moves every live legacy session into edge-session. Each legacy record keeps only the new
    session's token until the legacy cookie expires, so a browser that comes back with it lands
    in its new session. Running it again skips what was moved."""
    try:
        _interface().import_legacy(click.echo, dry_run=dry_run, progress_every=progress_every)
    except (ConfigError, CompanionError) as error:
        raise click.ClickException(str(error)) from error


@cli.command("list")
@click.argument("user")
def list_command(user: str) -> None:
    """Lists USER's live sessions by handle (never by id), oldest first."""
    try:
        lines = session_table(_interface().companion, user)
    except (OperatorError, CompanionError) as error:
        raise click.ClickException(str(error)) from error
    for line in lines:
        click.echo(line)


@cli.command("end")
@click.argument("user")
@click.option("--handle", metavar="H", help="End the session with this handle.")
@click.option("--all-except", metavar="H", help="End every session but the one with this handle.")
@click.option("--all", "everything", is_flag=True, help="End every session of the user.")
def end_command(user: str, handle: str | None, all_except: str | None, everything: bool) -> None:
    """Ends one, all but one, or all of USER's sessions (handles from `list`)."""
    try:
        message = end_sessions(
            _interface().companion, user, handle=handle, all_except=all_except, everything=everything
        )
    except (OperatorError, CompanionError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(message)
