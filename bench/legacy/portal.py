"""000's issuance portal as it ran: Flask + requests + qrcode under gunicorn ``gthread`` 2 × 4.

One visitor's flow, each step a request that holds one of the 8 threads while it waits:

* ``GET /`` (``/de``, ``/fr`` set the language first): ``requests.post`` to
  ``{CONNECTION_URL}/connection/invitation`` → the connection id goes into the session, the
  invitation URL becomes a PNG QR code (``qrcode.make(...).save(...)``) written to a file that the
  page's ``<img>`` loads from ``/static/qr/<file>``; the page polls every 2 s.
* ``GET /check_connection/`` (also ``/check-connection/``): ``requests.get`` of
  ``{CONNECTION_URL}/connection/<id>`` → ``{"status": "connected"}`` once it answers
  ``"established"``, else ``"not connected"``. The page then opens ``/name``.
* ``GET /name`` (the form); ``POST /name`` (``prename``, ``surname``, ``institution``):
  ``requests.post`` of the credential offer to ``{ISSUER_URL}/issue/process`` (CONTRACTS.md §1's
  body) → the process id into the session, the loading page, which polls every 2 s:
* ``GET /loading/``: ``requests.get`` of ``{ISSUER_URL}/issue/process/<id>/state`` →
  ``{"status": "accepted"}`` for anything but ``"IN_PROGRESS"`` (the original's rule).
* ``GET /success``. ``GET /health`` answers ``{"status": "ok"}`` (for the launcher only).

Each agent call is a module-level ``requests`` call (a new connection each time), as the
original made them. Where this differs from the original, for the benchmark's sake: a QR file per
visitor instead of one shared file (the original's race; the work is the same), Flask's signed
cookie session instead of Flask-Session's files, Talisman's and flask-cors's headers set by hand
(neither is installed), no form post to the third-party webhook, no TLS.

Environment: ``LEGACY_SECRET_KEY``, ``LEGACY_CONNECTION_URL``, ``LEGACY_ISSUER_URL``,
``LEGACY_CREDENTIAL_DEFINITION_ID``, ``LEGACY_QR_DIR`` (a writable directory).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import qrcode
import requests
from flask import Flask, jsonify, redirect, render_template, request, send_from_directory, session
from jinja2 import DictLoader

app = Flask(__name__)
app.secret_key = os.environ["LEGACY_SECRET_KEY"]
app.config.update(SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True)
CONNECTION_URL = os.environ["LEGACY_CONNECTION_URL"]
ISSUER_URL = os.environ["LEGACY_ISSUER_URL"]
CREDENTIAL_DEFINITION_ID = os.environ.get("LEGACY_CREDENTIAL_DEFINITION_ID", "cred-def:1")
QR_DIR = os.environ["LEGACY_QR_DIR"]
TIMEOUT = 30
PROMPTS = {
    "de": ("Scannen Sie den QR-Code mit Ihrer Wallet", "Ihre Angaben", "Bitte warten"),
    "fr": ("Scannez le code QR avec votre wallet", "Vos données", "Veuillez patienter"),
}
POLL = """<script>
setTimeout(function poll() {{
  fetch("{url}").then(r => r.json()).then(d => {{
    if (d.status === "{want}") {{ location.href = "{next}"; }} else {{ setTimeout(poll, 2000); }}
  }});
}}, 2000);
</script>"""
app.jinja_loader = DictLoader(
    {
        "base.html": (
            "<!doctype html><html lang='{{ lang }}'><head><meta charset='utf-8'>"
            "<title>Register</title></head><body>{% block body %}{% endblock %}</body></html>"
        ),
        "index.html": (
            "{% extends 'base.html' %}{% block body %}<h1>{{ prompt }}</h1>"
            "<img id='qr' src='/static/qr/{{ qr }}' alt='QR code'>"
            + POLL.format(url="/check_connection/", want="connected", next="/name")
            + "{% endblock %}"
        ),
        "name.html": (
            "{% extends 'base.html' %}{% block body %}<h1>{{ prompt }}</h1>"
            "<form method='post' action='/name'>"
            "{% for f in ['prename', 'surname', 'institution'] %}"
            "<label>{{ f }} <input name='{{ f }}' required></label>{% endfor %}"
            "<button>OK</button></form>{% endblock %}"
        ),
        "loading.html": (
            "{% extends 'base.html' %}{% block body %}<h1>{{ prompt }}</h1>"
            + POLL.format(url="/loading/", want="accepted", next="/success")
            + "{% endblock %}"
        ),
        "success.html": "{% extends 'base.html' %}{% block body %}<h1>OK</h1>{% endblock %}",
    }
)


def prompts() -> tuple[str, str, str]:
    return PROMPTS[session.get("lang", "de")]


@app.after_request
def security_headers(response: Any) -> Any:
    """What Talisman (the original's CSP, ``'unsafe-inline'`` and all) and flask-cors added."""
    response.headers["Content-Security-Policy"] = "default-src 'self' * 'unsafe-inline'"
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@app.get("/health")
def health() -> Any:
    return jsonify({"status": "ok"})


@app.get("/")
def index() -> Any:
    answer = requests.post(f"{CONNECTION_URL}/connection/invitation", timeout=TIMEOUT).json()
    session["connection_id"] = answer["connectionId"]
    name = f"{uuid.uuid4().hex}.png"
    qrcode.make(answer["invitationUrl"]).save(os.path.join(QR_DIR, name))
    return render_template(
        "index.html", lang=session.get("lang", "de"), prompt=prompts()[0], qr=name
    )


@app.get("/de")
@app.get("/fr")
def language() -> Any:
    session["lang"] = request.path[1:]
    return index()


@app.get("/static/qr/<name>")
def qr_image(name: str) -> Any:
    return send_from_directory(QR_DIR, name, mimetype="image/png")


@app.get("/check_connection/")
@app.get("/check-connection/")
def check_connection() -> Any:
    connection_id = session.get("connection_id")
    if connection_id is None:
        return jsonify({"status": "not connected"})
    answer = requests.get(f"{CONNECTION_URL}/connection/{connection_id}", timeout=TIMEOUT)
    connected = answer.status_code == 200 and answer.json() == "established"
    return jsonify({"status": "connected" if connected else "not connected"})


@app.route("/name", methods=["GET", "POST"])
def name() -> Any:
    if request.method == "GET":
        return render_template("name.html", lang=session.get("lang", "de"), prompt=prompts()[1])
    fields = [request.form.get(f, "").strip() for f in ("prename", "surname", "institution")]
    if not all(fields) or "connection_id" not in session:
        return redirect("/name")
    body = {
        "connectionId": session["connection_id"],
        "credentialDefinitionId": CREDENTIAL_DEFINITION_ID,
        "attributes": dict(zip(("Prename", "Surname", "Institution"), fields, strict=True)),
        "userId": "Anonymous",
    }
    answer = requests.post(f"{ISSUER_URL}/issue/process", json=body, timeout=TIMEOUT)
    session["process_id"] = answer.json()["processId"]
    return render_template("loading.html", lang=session.get("lang", "de"), prompt=prompts()[2])


@app.get("/loading/")
def loading() -> Any:
    process_id = session.get("process_id")
    if process_id is None:
        return jsonify({"status": "not accepted"})
    answer = requests.get(f"{ISSUER_URL}/issue/process/{process_id}/state", timeout=TIMEOUT)
    # The original's rule (a bug: an error page also counts as accepted).
    accepted = answer.text.strip() != '"IN_PROGRESS"'
    return jsonify({"status": "accepted" if accepted else "not accepted"})


@app.get("/success")
def success() -> Any:
    return render_template("success.html", lang=session.get("lang", "de"))
