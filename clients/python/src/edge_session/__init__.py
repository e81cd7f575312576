"""edge-session for Python apps: the filter's cookie token and the companion's ``/v1`` API, with a
Django session engine (``edge_session.django``) and a Flask session interface
(``edge_session.flask``) on top, so Python apps share sessions with everything behind the proxy."""

from .companion import CompanionClient, CompanionError, CompanionRefused, CompanionUnavailable, Session
from .secret_rules import DevelopmentSecretWarning, SecretPolicy
from .token import ConfigError, Keyring, SigningKey

__version__ = "0.2.0"

__all__ = [
    "CompanionClient",
    "CompanionError",
    "CompanionRefused",
    "CompanionUnavailable",
    "ConfigError",
    "DevelopmentSecretWarning",
    "Keyring",
    "SecretPolicy",
    "Session",
    "SigningKey",
    "__version__",
]
