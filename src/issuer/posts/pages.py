"""The blog's pages (003): home (``/home``, ``/blog``), about, a post, new/update/delete (the
author only), a user's posts, the account page (username, email, picture). Forms carry the
CSRF token, every action flashes a message, and errors on these pages are HTML pages."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, abort, flash, g, redirect, render_template, request, session
from quart_auth import current_user
from quart_schema import document_response, validate_querystring, validate_request
from quart_schema.validation import DataSource

from issuer.accounts.auth import principal
from issuer.accounts.pages import check_form_csrf
from issuer.errors import DomainError, Unauthenticated
from issuer.lib.csrf import csrf_token
from issuer.posts.routes import picture_url, read_upload
from issuer.posts.schemas import AccountForm, CsrfForm, PageQuery, PostForm, UpdateForm
from issuer.posts.service import Posts
from issuer.posts.text import linkify
from issuer.schemas import ErrorBody
from issuer.web.context import services
from issuer.web.openapi import html_page

blueprint = Blueprint("post_pages", __name__)
blueprint.add_app_template_filter(linkify, "linkify")


@blueprint.before_request
async def html_errors() -> None:
    """Errors of these pages' GETs answer as HTML pages (the API, and form posts, keep the
    JSON shape)."""
    if request.method == "GET":
        g.html_errors = True


def posts() -> Posts:
    return services().posts


async def page(template: str, code: int = 200, **context: Any) -> Any:
    user = await viewer()
    body = await render_template(
        template, csrf=csrf_token(session), lang="en", viewer=user, picture_url=picture_url,
        **context,
    )  # fmt: skip
    return body, code


async def viewer() -> Any:
    """The logged-in browser's user, or ``None``."""
    if not current_user.auth_id:
        return None
    try:
        return (await principal()).user
    except Unauthenticated:
        return None


def to_login() -> Any:
    return redirect(f"/login?next={request.path}")


@blueprint.get("/home")
@blueprint.get("/blog")
@validate_querystring(PageQuery)
@html_page(200, 404)
async def home(query_args: PageQuery) -> Any:
    """The blog: posts newest first, 5 per page, with page links (``?page=N``); a page past
    the end is 404."""
    found, _ = await posts().page(query_args.page, query_args.per_page)
    if query_args.page > found.pages:
        abort(404)
    return await page("posts/home.html", found=found, heading="Blog", base="/home")


@blueprint.get("/about")
@html_page()
async def about() -> Any:
    """About the blog."""
    return await page("posts/about.html")


@blueprint.get("/user/<username>")
@validate_querystring(PageQuery)
@html_page(200, 404)
async def user_page(username: str, query_args: PageQuery) -> Any:
    """One user's posts, newest first, with page links."""
    found, author = await posts().page(query_args.page, query_args.per_page, author=username)
    if query_args.page > found.pages:
        abort(404)
    assert author is not None
    heading = f"Posts by {author.username or author.email} ({found.total})"
    return await page("posts/home.html", found=found, heading=heading, base=f"/user/{username}")


@blueprint.get("/post/<row_id:post_id>")
@html_page(200, 404)
async def post_page(post_id: int) -> Any:
    """One post; its author sees update and delete."""
    return await page("posts/post.html", view=await posts().get(post_id))


@blueprint.get("/post/new")
@html_page(200, 302)
async def new_post_page() -> Any:
    """The new-post form (log in first)."""
    if await viewer() is None:
        return to_login()
    return await page("posts/form.html", legend="New post", action="/post/new", view=None)


@blueprint.post("/post/new")
@validate_request(PostForm, source=DataSource.FORM)
@html_page(303)
@document_response(ErrorBody, 403)
async def new_post(data: PostForm) -> Any:
    """Write a post; then its page, with a flash message."""
    check_form_csrf(data.csrf_token)
    if await viewer() is None:
        return to_login()
    view = await posts().create(await principal(), data.title, data.content)
    await flash("Your post has been created.", "success")
    return redirect(f"/post/{view.post.id}", 303)


@blueprint.get("/post/<row_id:post_id>/update")
@html_page(200, 302, 403, 404)
async def update_post_page(post_id: int) -> Any:
    """The update form of your post (403 for someone else's)."""
    user = await viewer()
    if user is None:
        return to_login()
    view = await posts().get(post_id)
    if view.post.user_id != user.id:
        abort(403)
    return await page(
        "posts/form.html", legend="Update post", action=f"/post/{post_id}/update", view=view
    )


@blueprint.post("/post/<row_id:post_id>/update")
@validate_request(UpdateForm, source=DataSource.FORM)
@html_page(303)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 404)
@document_response(ErrorBody, 412)
async def update_post(post_id: int, data: UpdateForm) -> Any:
    """Save an edit (of the version the form was made from: a newer edit is not lost)."""
    check_form_csrf(data.csrf_token)
    if await viewer() is None:
        return to_login()
    await posts().update(
        await principal(), post_id, data.version, title=data.title, content=data.content
    )
    await flash("Your post has been updated.", "success")
    return redirect(f"/post/{post_id}", 303)


@blueprint.post("/post/<row_id:post_id>/delete")
@validate_request(CsrfForm, source=DataSource.FORM)
@html_page(303)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 404)
@document_response(ErrorBody, 412)
async def delete_post(post_id: int, data: CsrfForm) -> Any:
    """Delete your post; then the blog, with a flash message."""
    check_form_csrf(data.csrf_token)
    if await viewer() is None:
        return to_login()
    await posts().delete(await principal(), post_id, data.version)
    await flash("Your post has been deleted.", "success")
    return redirect("/home", 303)


@blueprint.get("/account")
@html_page(200, 302)
async def account_page() -> Any:
    """Your account: username, email, profile picture."""
    user = await viewer()
    if user is None:
        return to_login()
    etag = await posts().picture_etag(user.id)
    return await page("posts/account.html", user=user, etag=etag)


@blueprint.post("/account")
@validate_request(AccountForm, source=DataSource.FORM_MULTIPART)
@html_page(303)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 409)
async def update_account(data: AccountForm) -> Any:
    """Save the account: a new username or email (a new email must be verified again), and a
    new picture when one is chosen."""
    check_form_csrf(data.csrf_token)
    if await viewer() is None:
        return to_login()
    current = await principal()
    await services().accounts.update_profile(current, data.username, data.email or None)
    if data.picture is not None and data.picture.filename:
        await posts().set_picture(current, await read_upload(data.picture))
    await flash("Your account has been updated.", "success")
    return redirect("/account", 303)


async def error_page(error: DomainError | None, status: int) -> Any:
    """The HTML error page of these paths (403, 404, 412, 422, …)."""
    message = error.message if error is not None else {
        403: "You may not do this.", 404: "There is nothing here.",
    }.get(status, "Something went wrong.")  # fmt: skip
    return await page("posts/error.html", status, status=status, message=message)
