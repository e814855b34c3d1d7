"""001's vector API: ``POST /generate_array`` (access token required, quota per user)."""

from __future__ import annotations

import hashlib
import random
from typing import Annotated

import orjson
from quart import Blueprint, Response
from quart_rate_limiter import rate_limit
from quart_schema import document_response, validate_request

from issuer.accounts.auth import token_required
from issuer.accounts.limits import GENERATE_ARRAY_QUOTA
from issuer.schemas import UNICODE, ErrorBody, Input, free_text

blueprint = Blueprint("vectors", __name__)
DIMENSIONS = 500


class SentenceIn(Input):
    """001's body: the sentence to embed."""

    sentence: Annotated[str, free_text(10_000, min_length=1), UNICODE]


def vector_for(sentence: str) -> list[float]:
    """500 floats in [0, 1), the same for the same sentence (seeded by its SHA-256)."""
    seed = int.from_bytes(hashlib.sha256(sentence.encode()).digest(), "big")
    generator = random.Random(seed)  # noqa: S311 — a deterministic embedding stand-in, not a secret
    return [generator.random() for _ in range(DIMENSIONS)]


@blueprint.post("/generate_array")
@rate_limit(limits=GENERATE_ARRAY_QUOTA)
@token_required
@validate_request(SentenceIn)
@document_response(list[float], 200)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def generate_array(data: SentenceIn) -> Response:
    """A 500-dimensional array for a sentence: ``{"sentence": str}`` → ``[float, …]``.

    Needs ``Authorization: Bearer <access token>``; at most 10 calls a minute per user
    (configurable), then 429 with ``Retry-After``.
    """
    # The JSON is made here: quart-schema would build a pydantic adapter for the list on each
    # call (a tenth of the request) to dump what is already plain floats, and the standard
    # library takes 180 µs to write 500 floats as text (a quarter of the request), orjson 9.
    body = orjson.dumps(vector_for(data.sentence)) + b"\n"
    return Response(body, content_type="application/json")
