"""Tests of the edge_session package; ``cargo xtask python`` runs them against a real stack."""

from . import django_setup  # noqa: F401 - Django is configured before any test module imports it
