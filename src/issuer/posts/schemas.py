"""Request and response shapes of the posts API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError
from quart_schema.pydantic import File

from issuer.schemas import NO_NUL, STRIPPED, UNICODE, Input, one_of_required, visible_line

# A title: one line with something visible, up to 100 characters; content up to 20 000.
Title = Annotated[str, visible_line(100), UNICODE, STRIPPED]
Content = Annotated[str, Field(min_length=1, max_length=20_000, pattern=NO_NUL), UNICODE]


class PageQuery(BaseModel):
    """``page`` from 1; ``per_page`` 1–50 (5, as 003's blog)."""

    page: int = Field(1, ge=1, le=1_000_000)
    per_page: int = Field(5, ge=1, le=50)


class PostIn(Input):
    title: Title
    content: Content


class PostPatch(Input):
    """Either or both of ``title`` and ``content``."""

    model_config = ConfigDict(json_schema_extra=one_of_required("title", "content"))

    title: Title | None = None
    content: Content | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.title is None and self.content is None:
            raise PydanticCustomError("nothing_to_change", "title or content is required")
        return self


class PostForm(Input):
    """The new-post page's form."""

    title: Title
    content: Content
    csrf_token: Annotated[str, Field(max_length=100, pattern=r"^[A-Za-z0-9_-]*$")] = ""


class UpdateForm(PostForm):
    """The update page's form: also the version of the post it was made from."""

    version: Annotated[int, Field(ge=0, le=2**31)] = 0


class CsrfForm(Input):
    """The delete button's form: the CSRF token and the version shown."""

    csrf_token: Annotated[str, Field(max_length=100, pattern=r"^[A-Za-z0-9_-]*$")] = ""
    version: Annotated[int, Field(ge=0, le=2**31)] = 0


class PictureUpload(BaseModel):
    """``picture``: a JPEG, PNG or WebP file of at most 2 MB."""

    picture: File


class AccountForm(Input):
    """The account page: username, email, and optionally a picture."""

    username: Annotated[str, Field(min_length=2, max_length=150, pattern=r"^[\w.@+-]{2,150}$")]
    email: Annotated[str, Field(max_length=320, pattern=r"^([^@\s]{1,64}@[^@\s]{1,255})?$")] = ""
    csrf_token: Annotated[str, Field(max_length=100, pattern=r"^[A-Za-z0-9_-]*$")] = ""
    picture: File | None = None


class AuthorOut(BaseModel):
    username: str | None
    picture: str  # URL of the 125×125 picture (a default avatar when none)


class PostOut(BaseModel):
    """A post; ``version`` is also its ``ETag``."""

    id: int
    title: str
    content: str
    date_posted: datetime
    updated_at: datetime | None
    version: int
    author: AuthorOut


class PostsOut(BaseModel):
    items: list[PostOut]
    page: int
    per_page: int
    total: int
    pages: int


class PictureOut(BaseModel):
    success: bool = True
    picture: str
    picture_large: str
