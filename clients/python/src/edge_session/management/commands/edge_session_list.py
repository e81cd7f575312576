"""``manage.py edge_session_list USER``: a user's live sessions, by handle."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from edge_session.companion import CompanionError
from edge_session.django import companion_client
from edge_session.operations import OperatorError, session_table


class Command(BaseCommand):
    help = "Lists a user's live edge-session sessions by handle (never by id), oldest first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="the user id sessions are bound to (the value of USER_KEY)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            lines = session_table(companion_client(), options["user"])
        except (OperatorError, CompanionError) as error:
            raise CommandError(str(error)) from error
        for line in lines:
            self.stdout.write(line)
