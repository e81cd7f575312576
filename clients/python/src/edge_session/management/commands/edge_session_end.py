"""``manage.py edge_session_end USER (--handle H | --all-except H | --all)``: ends sessions."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from edge_session.companion import CompanionError
from edge_session.django import companion_client
from edge_session.operations import OperatorError, end_sessions


class Command(BaseCommand):
    help = "Ends one, all but one, or all of a user's edge-session sessions (handles from edge_session_list)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="the user id sessions are bound to (the value of USER_KEY)")
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--handle", metavar="H", help="end the session with this handle")
        which.add_argument("--all-except", metavar="H", help="end every session but the one with this handle")
        which.add_argument("--all", action="store_true", help="end every session of the user")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            message = end_sessions(
                companion_client(),
                options["user"],
                handle=options["handle"],
                all_except=options["all_except"],
                everything=options["all"],
            )
        except (OperatorError, CompanionError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(message)
