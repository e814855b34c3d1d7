"""The originals' stack as they ran it, the reference the parity benchmark measures us against.

``accounts`` is 001's and 003's accounts API (Flask, PyJWT, psycopg2, one gunicorn sync worker)
and ``portal`` is 000's issuance portal (Flask, requests, qrcode, gunicorn ``gthread`` 2 × 4).
Both do the same work as our routes — on our PostgreSQL schema, with our argon2id parameters and
against the same fake agents — so that only the stack differs. ``server`` starts them under
gunicorn. They are benchmark fixtures: configured from ``LEGACY_*`` variables at import time, as
the originals were, and not meant to be deployed.
"""
