"""The posts' use cases: list (pages of a bounded ``OFFSET``), read, write, edit and delete
(the author only; an edit or delete names the version it saw, so two editors never silently
overwrite each other), and profile pictures. Every write is one transaction with its
``post.*`` event in the outbox."""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from issuer.accounts import queries as accounts
from issuer.accounts.events import user_event
from issuer.accounts.models import User
from issuer.accounts.sessions import Principal
from issuer.clock import Clock
from issuer.db import Database
from issuer.errors import Forbidden, NotFound, PreconditionFailed
from issuer.outbox.service import Outbox
from issuer.posts import pictures, queries
from issuer.posts.models import Post, ProfilePicture

NOT_FOUND = "No such post."
NOT_YOURS = "This post belongs to someone else."
STALE = "The post was changed since you read it; reload it and try again."


@dataclass(frozen=True, slots=True)
class PostView:
    post: Post
    author: User
    picture: str | None  # the author's picture etag


@dataclass(frozen=True, slots=True)
class Page:
    items: list[PostView]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    def iter_pages(
        self, left_edge: int = 1, left_current: int = 1, right_current: int = 2,
        right_edge: int = 1,
    ) -> list[int | None]:  # fmt: skip
        """Page numbers with ``None`` for the gaps, as Flask-SQLAlchemy's ``iter_pages``."""
        shown: list[int | None] = []
        last = 0
        for number in range(1, self.pages + 1):
            if (
                number <= left_edge
                or self.page - left_current - 1 < number < self.page + right_current
                or number > self.pages - right_edge
            ):
                if last + 1 != number:
                    shown.append(None)
                shown.append(number)
                last = number
        return shown


def event(post: Post, author: User) -> dict[str, object]:
    return {**user_event(author), "post": {"id": post.id, "title": post.title}}


class Posts:
    def __init__(self, db: Database, outbox: Outbox, clock: Clock) -> None:
        self.db = db
        self.outbox = outbox
        self.clock = clock

    async def _views(self, session: AsyncSession, rows: list[queries.PostRow]) -> list[PostView]:
        found = await queries.pictures_of(session, list({user.id for _, user in rows}))
        return [PostView(post, user, found.get(user.id)) for post, user in rows]

    async def page(
        self, page: int, per_page: int, *, author: str | None = None
    ) -> tuple[Page, User | None]:
        """One page, newest first (of ``author``'s posts when named: ``NotFound`` if there is
        no such user). A page past the end has no items."""
        async with self.db.session() as session:
            user = None
            if author is not None:
                user = await accounts.user_by_username(session, author)
                if user is None:
                    raise NotFound("No such user.", code="unknown_user")
            author_id = user.id if user else None
            total = await queries.count_posts(session, author_id)
            rows = []
            if (page - 1) * per_page < total:  # OFFSET only within the table
                rows = await queries.page_of_posts(
                    session, offset=(page - 1) * per_page, limit=per_page, author_id=author_id
                )
            return Page(await self._views(session, rows), page, per_page, total), user

    async def get(self, post_id: int) -> PostView:
        async with self.db.session() as session:
            found = await queries.post_with_author(session, post_id)
            if found is None:
                raise NotFound(NOT_FOUND)
            return (await self._views(session, [found]))[0]

    async def create(self, principal: Principal, title: str, content: str) -> PostView:
        user = principal.user
        async with self.db.transaction() as session:
            post = await queries.add_post(
                session, Post(user_id=user.id, title=title, content=content,
                              created_at=self.clock.now(), version=1),
            )  # fmt: skip
            await self.outbox.event(session, "post.created", event(post, user), user_id=user.id)
        return await self.get(post.id)

    async def update(
        self, principal: Principal, post_id: int, version: int, *, title: str | None,
        content: str | None,
    ) -> PostView:  # fmt: skip
        """Edit the user's own post at ``version``: 404 missing, 403 someone else's, 412 stale."""
        user = principal.user
        values = {k: v for k, v in (("title", title), ("content", content)) if v is not None}
        async with self.db.transaction() as session:
            if not await queries.edit_own_post(
                session, post_id, user.id, version, values, self.clock.now()
            ):
                await self._refusal(session, post_id, user)
            found = await queries.post_with_author(session, post_id)
            assert found is not None
            await self.outbox.event(session, "post.updated", event(found[0], user), user_id=user.id)
        return await self.get(post_id)

    async def delete(self, principal: Principal, post_id: int, version: int) -> None:
        user = principal.user
        async with self.db.transaction() as session:
            found = await queries.post_with_author(session, post_id)
            if found is None or not await queries.delete_own_post(
                session, post_id, user.id, version
            ):
                await self._refusal(session, post_id, user)
                return
            await self.outbox.event(session, "post.deleted", event(found[0], user), user_id=user.id)

    async def _refusal(self, session: AsyncSession, post_id: int, user: User) -> None:
        """Why a conditional write of ``post_id`` matched nothing."""
        found = await queries.post_with_author(session, post_id)
        if found is None:
            raise NotFound(NOT_FOUND)
        if found[0].user_id != user.id:
            raise Forbidden(NOT_YOURS, code="not_your_post")
        raise PreconditionFailed(STALE, code="stale_post")

    # --- pictures ---------------------------------------------------------------------------

    async def set_picture(self, principal: Principal, data: bytes) -> str:
        """Check, strip and resize an upload (in a thread); the new picture's etag."""
        made = await asyncio.to_thread(pictures.process, data)
        user = principal.user
        async with self.db.transaction() as session:
            await session.merge(
                ProfilePicture(user_id=user.id, small=made.small, large=made.large,
                               etag=made.etag, updated_at=self.clock.now())
            )  # fmt: skip
            await self.outbox.event(session, "user.picture_changed", user_event(user),
                                    user_id=user.id)  # fmt: skip
        return made.etag

    async def picture_etag(self, user_id: int) -> str | None:
        async with self.db.session() as session:
            return (await queries.pictures_of(session, [user_id])).get(user_id)

    async def picture_by_entity(self, entity_hex: str) -> ProfilePicture | None:
        async with self.db.session() as session:
            user = await accounts.user_by_entity(session, uuid.UUID(hex=entity_hex))
            return await queries.picture_of(session, user.id) if user else None
