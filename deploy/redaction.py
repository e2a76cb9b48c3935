"""Passwords out of anything that may reach output: URLs and free text."""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """Replace the password of a postgresql:// URL with ***; anything unparsable is hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{quote(unquote(user), safe='')}:***@{netloc[1]}"))


def redact(text: str, *secrets: str | None) -> str:
    """Remove every secret (and its URL-encoded form) from text that may reach output."""
    for secret in secrets:
        if secret:
            for form in {secret, quote(secret, safe="")}:
                text = text.replace(form, "***")
    return text
