"""Writes sessions with django-mongo-sessions 0.0.4 itself, as a legacy app did.

Run by the legacy virtualenv's Python (Django 3.2 and pymongo 3.13, on which the package runs):
``argv`` = MongoDB URI, database, collection, SECRET_KEY, MONGO_SESSIONS_TTL and Django 3.2's
DEFAULT_HASHING_ALGORITHM (``sha256``, or ``sha1`` for the pre-3.1 format); stdin = a JSON list
of session data; stdout = the JSON list of their session keys (the legacy cookie values).
"""

import json
import sys
import warnings

import django
from django.conf import settings

uri, database, collection, secret, ttl, hashing = sys.argv[1:7]
warnings.simplefilter("ignore")  # Django 3.2 warns about DEFAULT_HASHING_ALGORITHM
settings.configure(
    SECRET_KEY=secret,
    USE_TZ=True,
    INSTALLED_APPS=["django.contrib.sessions"],
    SESSION_ENGINE="mongo_sessions.session",
    DEFAULT_HASHING_ALGORITHM=hashing,
    # mongo_sessions/settings.py: MongoClient(host=MONGO_HOST, port=MONGO_PORT)[MONGO_DB_NAME]
    MONGO_HOST=uri,
    MONGO_DB_NAME=database,
    MONGO_SESSIONS_COLLECTION=collection,
    MONGO_SESSIONS_TTL=int(ttl),
)
django.setup()

from mongo_sessions.session import SessionStore  # noqa: E402 - after settings

keys = []
for data in json.load(sys.stdin):
    store = SessionStore()
    store.update(data)
    store.save()
    keys.append(store.session_key)
print(json.dumps(keys))
