"""Writes sessions with flask-mongo-sessions 0.2.1 itself, through a Flask app's requests.

Run by the legacy virtualenv's Python (Flask 2.2 and pymongo 3.13: the package reads
``app.session_cookie_name``, gone in Flask 2.3, and calls ``Collection.update``, gone in
pymongo 4). ``argv`` = MongoDB URI, database, collection; stdin = a JSON list of sessions, each
``{"data": {...}, "permanent": bool, "special": bool}`` (``special`` adds values of the types
Flask's session serializer carries); stdout = the JSON list of the cookie values it set.
"""

import datetime
import json
import sys
import uuid

from flask import Flask, request, session
from flask_mongo_sessions import MongoDBSessionInterface
from markupsafe import Markup
from pymongo import MongoClient

uri, database, collection = sys.argv[1:4]
app = Flask("legacy")
app.session_interface = MongoDBSessionInterface(app, MongoClient(uri)[database], collection)

SPECIAL = {
    "when": datetime.datetime(2024, 5, 1, 12, 30, 15, tzinfo=datetime.timezone.utc),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "pair": (1, "two"),
    "markup": Markup("<b>bold</b>"),
    "raw": b"\xff\x00",
}


@app.post("/write")
def write():
    spec = request.get_json()
    session.update(spec["data"])
    if spec.get("special"):
        session.update(SPECIAL)
    session.permanent = bool(spec.get("permanent"))
    return "ok"


cookies = []
for spec in json.load(sys.stdin):
    reply = app.test_client().post("/write", json=spec)
    cookies.append(reply.headers["Set-Cookie"].split(";")[0].split("=", 1)[1])
print(json.dumps(cookies))
