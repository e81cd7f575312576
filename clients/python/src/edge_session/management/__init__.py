"""Django management commands; Django finds them when ``INSTALLED_APPS`` lists ``"edge_session"``."""
