"""``manage.py edge_session_import [--dry-run]``: moves every live session of the legacy engine
(``EDGE_SESSION["LEGACY"]``) into edge-session ahead of time, idempotently."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from edge_session.companion import CompanionError
from edge_session.django import import_legacy_sessions


class Command(BaseCommand):
    help = (
        'Moves every live session of EDGE_SESSION["LEGACY"] into edge-session; each legacy record keeps'
        " only the new session's token until the legacy cookie expires, so a browser that comes back"
        " with it lands in its new session. Running it again skips what was moved."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count what would move; write nothing")
        parser.add_argument(
            "--progress-every", type=int, default=1000, metavar="N", help="a progress line every N sessions"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["progress_every"] < 1:
            raise CommandError("--progress-every must be at least 1")
        try:
            import_legacy_sessions(
                self.stdout.write, dry_run=options["dry_run"], progress_every=options["progress_every"]
            )
        except (ImproperlyConfigured, CompanionError) as error:
            raise CommandError(str(error)) from error
