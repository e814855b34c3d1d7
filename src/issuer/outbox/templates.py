"""Email templates: a plain-text and an HTML body per message, in English, German or French."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

LANGUAGES = ("en", "de", "fr")
_env = Environment(
    loader=PackageLoader("issuer", "templates/email"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)

SUBJECTS: dict[str, dict[str, str]] = {
    "verify_email": {
        "en": "Confirm your email address",
        "de": "Bestätigen Sie Ihre E-Mail-Adresse",
        "fr": "Confirmez votre adresse e-mail",
    },
    "reset_password": {
        "en": "Reset your password",
        "de": "Passwort zurücksetzen",
        "fr": "Réinitialisez votre mot de passe",
    },
    "password_changed": {
        "en": "Your password was changed",
        "de": "Ihr Passwort wurde geändert",
        "fr": "Votre mot de passe a été modifié",
    },
    "account_exists": {
        "en": "You already have an account",
        "de": "Sie haben bereits ein Konto",
        "fr": "Vous avez déjà un compte",
    },
}


def render_email(
    template: str, language: str | None, context: dict[str, Any]
) -> tuple[str, str, str]:
    """``(subject, text, html)`` of ``template`` in ``language`` (English when unknown)."""
    lang = language if language in LANGUAGES else "en"
    subject = SUBJECTS[template][lang]
    values = {**context, "lang": lang, "subject": subject}
    text = _env.get_template(f"{template}.{lang}.txt").render(values)
    html = _env.get_template("layout.html").render(
        values, body=_env.get_template(f"{template}.{lang}.txt").render(values)
    )
    return subject, text, html
