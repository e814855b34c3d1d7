"""The posts' SQL: small typed functions, session first; ownership and the expected version
are part of the ``WHERE`` clause of every write."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.accounts.models import User
from issuer.posts.models import Post, ProfilePicture

PostRow = tuple[Post, User]


def _listing(author_id: int | None) -> Select[Post, User]:
    statement = select(Post, User).join(User, User.id == Post.user_id)
    if author_id is not None:
        statement = statement.where(Post.user_id == author_id)
    return statement


async def page_of_posts(
    session: AsyncSession, *, offset: int, limit: int, author_id: int | None = None
) -> list[PostRow]:
    """Newest first (``created_at``, then ``id``), read along ``ix_posts_created_at_id``."""
    rows = await session.execute(
        _listing(author_id)
        .order_by(Post.created_at.desc(), Post.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in rows]


async def count_posts(session: AsyncSession, author_id: int | None = None) -> int:
    statement = select(func.count()).select_from(Post)
    if author_id is not None:
        statement = statement.where(Post.user_id == author_id)
    return int(await session.scalar(statement) or 0)


async def post_with_author(session: AsyncSession, post_id: int) -> PostRow | None:
    found = (await session.execute(_listing(None).where(Post.id == post_id))).first()
    return (found[0], found[1]) if found is not None else None


async def add_post(session: AsyncSession, post: Post) -> Post:
    session.add(post)
    await session.flush()
    return post


async def edit_own_post(
    session: AsyncSession, post_id: int, user_id: int, version: int, values: Mapping[str, object],
    now: datetime,
) -> bool:  # fmt: skip
    """Apply ``values`` if the post is the user's and still at ``version``."""
    result = await session.execute(
        update(Post)
        .where(Post.id == post_id, Post.user_id == user_id, Post.version == version)
        .values(**values, version=Post.version + 1, updated_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def delete_own_post(session: AsyncSession, post_id: int, user_id: int, version: int) -> bool:
    result = await session.execute(
        delete(Post).where(Post.id == post_id, Post.user_id == user_id, Post.version == version)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def picture_of(session: AsyncSession, user_id: int) -> ProfilePicture | None:
    return await session.get(ProfilePicture, user_id)


async def pictures_of(session: AsyncSession, user_ids: list[int]) -> dict[int, str]:
    """``{user id: picture etag}`` of those who have one."""
    rows = await session.execute(
        select(ProfilePicture.user_id, ProfilePicture.etag).where(
            ProfilePicture.user_id.in_(user_ids)
        )
    )
    return {int(user_id): str(etag) for user_id, etag in rows}
