"""The posts JSON API: pages of posts, one post (``ETag``), write (``Idempotency-Key``), edit
and delete (the author only, ``If-Match`` required), a user's posts, and profile pictures."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, request
from quart_rate_limiter import rate_limit
from quart_schema import (
    document_response,
    validate_querystring,
    validate_request,
    validate_response,
)
from quart_schema.validation import DataSource

from issuer.accounts.auth import login_required, principal
from issuer.accounts.limits import ip_key
from issuer.errors import InvalidInput, NotFound, PreconditionFailed, PreconditionRequired
from issuer.posts.schemas import (
    AuthorOut,
    PageQuery,
    PictureOut,
    PictureUpload,
    PostIn,
    PostOut,
    PostPatch,
    PostsOut,
)
from issuer.posts.service import STALE, Page, Posts, PostView
from issuer.schemas import ErrorBody, Message
from issuer.web.bodies import takes_no_body
from issuer.web.context import services
from issuer.web.idempotency import idempotent

blueprint = Blueprint("posts", __name__)
MINUTE = timedelta(minutes=1)
DEFAULT_AVATAR = "/static/default-avatar.svg"
ETAG = re.compile(r'^(?:W/)?"(\d+)-(\d+)"$')


def posts() -> Posts:
    return services().posts


def etag_of(view: PostView) -> str:
    return f'"{view.post.id}-{view.post.version}"'


def picture_url(view_or_user: Any, etag: str | None, size: str = "small") -> str:
    if etag is None:
        return DEFAULT_AVATAR
    return f"/pictures/{view_or_user.entity_id.hex}/{size}?v={etag}"


def post_out(view: PostView) -> PostOut:
    post = view.post
    return PostOut(
        id=post.id, title=post.title, content=post.content, date_posted=post.created_at,
        updated_at=post.updated_at, version=post.version,
        author=AuthorOut(username=view.author.username or view.author.email,
                         picture=picture_url(view.author, view.picture)),
    )  # fmt: skip


def page_out(page: Page, path: str) -> tuple[PostsOut, dict[str, str]]:
    """The body, and RFC 8288 ``Link`` headers to the neighbouring, first and last pages."""
    links = []
    for rel, number in (
        ("first", 1), ("prev", page.page - 1), ("next", page.page + 1), ("last", page.pages),
    ):  # fmt: skip
        if 1 <= number <= page.pages and (rel in ("first", "last") or number != page.page):
            query = urlencode({"page": number, "per_page": page.per_page})
            links.append(f'<{path}?{query}>; rel="{rel}"')
    body = PostsOut(
        items=[post_out(v) for v in page.items], page=page.page, per_page=page.per_page,
        total=page.total, pages=page.pages,
    )  # fmt: skip
    return body, {"Link": ", ".join(links)} if links else {}


def expected_version(post_id: int) -> int:
    """The version ``If-Match`` names (RFC 9110 §13.1.1): required, and for this post."""
    header = request.headers.get("If-Match")
    if header is None:
        raise PreconditionRequired("Send If-Match with the ETag of the post you read.")
    found = ETAG.fullmatch(header.strip())
    if found is None or int(found[1]) != post_id:
        raise PreconditionFailed(STALE, code="stale_post")
    return int(found[2])


@blueprint.get("/api/posts")
@validate_querystring(PageQuery)
@validate_response(PostsOut)
async def list_posts(query_args: PageQuery) -> Any:
    """Posts, newest first: ``items``, ``page``, ``per_page`` (default 5, at most 50),
    ``total``, ``pages``, and ``Link`` headers (first, prev, next, last). A page past the end
    has no items."""
    page, _ = await posts().page(query_args.page, query_args.per_page)
    body, headers = page_out(page, "/api/posts")
    return body, 200, headers


@blueprint.get("/api/users/<username>/posts")
@validate_querystring(PageQuery)
@validate_response(PostsOut)
@document_response(ErrorBody, 404)
async def user_posts(username: str, query_args: PageQuery) -> Any:
    """One user's posts, newest first (as ``GET /api/posts``); 404 for an unknown user."""
    page, _ = await posts().page(query_args.page, query_args.per_page, author=username)
    body, headers = page_out(page, f"/api/users/{username}/posts")
    return body, 200, headers


@blueprint.get("/api/posts/<row_id:post_id>")
@validate_response(PostOut)
@document_response(ErrorBody, 404)
async def get_post(post_id: int) -> Any:
    """One post, with its ``ETag`` (send it back in ``If-Match`` to edit or delete)."""
    view = await posts().get(post_id)
    return post_out(view), 200, {"ETag": etag_of(view)}


@blueprint.post("/api/posts")
@rate_limit(30, MINUTE, key_function=ip_key)
@login_required
@idempotent
@validate_request(PostIn)
@validate_response(PostOut, 201)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 403)
async def create_post(data: PostIn) -> Any:
    """Write a post (``title`` ≤ 100, ``content`` ≤ 20 000 characters): 201 with
    ``Location`` and ``ETag``; ``Idempotency-Key`` makes a retry safe."""
    view = await posts().create(await principal(), data.title, data.content)
    headers = {"Location": f"/api/posts/{view.post.id}", "ETag": etag_of(view)}
    return post_out(view), 201, headers


@blueprint.patch("/api/posts/<row_id:post_id>")
@login_required
@validate_request(PostPatch)
@validate_response(PostOut)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 404)
@document_response(ErrorBody, 412)
@document_response(ErrorBody, 428)
async def edit_post(post_id: int, data: PostPatch) -> Any:
    """Edit your post: ``If-Match`` with the ``ETag`` you read is required (428 without, 412
    when the post changed since: nobody overwrites another's edit); 403 for someone else's."""
    version = expected_version(post_id)
    view = await posts().update(
        await principal(), post_id, version, title=data.title, content=data.content
    )
    return post_out(view), 200, {"ETag": etag_of(view)}


@blueprint.delete("/api/posts/<row_id:post_id>")
@login_required
@takes_no_body
@validate_response(Message)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 404)
@document_response(ErrorBody, 412)
@document_response(ErrorBody, 428)
async def delete_post(post_id: int) -> Message:
    """Delete your post (``If-Match`` required, as for an edit)."""
    version = expected_version(post_id)
    await posts().delete(await principal(), post_id, version)
    return Message(message="Your post has been deleted.")


@blueprint.put("/api/me/picture")
@rate_limit(10, MINUTE, key_function=ip_key)
@login_required
@validate_request(PictureUpload, source=DataSource.FORM_MULTIPART)
@validate_response(PictureOut)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 403)
async def put_picture(data: PictureUpload) -> PictureOut:
    """Your profile picture (multipart field ``picture``): JPEG, PNG or WebP by content, at
    most 2 MB and 25 megapixels (422 otherwise); stored without EXIF at 125×125 and 400×400."""
    current = await principal()
    etag = await posts().set_picture(current, await read_upload(data.picture))
    return PictureOut(
        picture=picture_url(current.user, etag),
        picture_large=picture_url(current.user, etag, "large"),
    )


async def read_upload(upload: Any) -> bytes:
    from issuer.posts.pictures import MAX_BYTES

    data: bytes = upload.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise InvalidInput("The picture must be at most 2 MB.", code="picture_too_large")
    return data


@blueprint.get("/pictures/<public_id:entity_id>/<any(small, large):size>")
@document_response(ErrorBody, 404)
async def get_picture(entity_id: str, size: str) -> Response:
    """A user's profile picture (JPEG). With ``?v=`` its current ETag, cached for a year;
    ``If-None-Match`` answers 304."""
    found = await posts().picture_by_entity(entity_id)
    if found is None:
        raise NotFound("No picture.")
    etag = f'"{found.etag}"'
    cache = (
        "public, max-age=31536000, immutable" if request.args.get("v") == found.etag
        else "public, max-age=0, must-revalidate"
    )  # fmt: skip
    headers = {"ETag": etag, "Cache-Control": cache}
    if request.headers.get("If-None-Match") == etag:
        return Response(status=304, headers=headers)
    body = found.small if size == "small" else found.large
    return Response(body, content_type="image/jpeg", headers=headers)
