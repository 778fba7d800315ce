"""Secrets out of URLs: every place that prints or logs a store URL masks it here."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|credential|signature", re.IGNORECASE)
_CONNINFO_SECRET = re.compile(
    r"(\b[\w.-]*(?:pass|pwd|secret|token|key|auth|credential)[\w.-]*\s*=\s*)('[^']*'|\S+)", re.I
)
MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with every secret masked, for logs, errors, /healthz and output: the password in the
    user-info part (``postgresql://u:***@host/db``) and the values of query parameters named like a
    secret (``?password=***&sslpassword=***``, tokens, keys). The one redaction function: every
    place that shows a store URL calls it. It never raises (a malformed URL is still masked)."""
    if "://" not in url:  # a libpq conninfo string ("host=h password=x") or no URL at all
        return _CONNINFO_SECRET.sub(lambda m: m.group(1) + MASK, url)
    scheme, rest = url.split("://", 1)
    path_at = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    netloc, tail = rest[:path_at], rest[path_at:]
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + MASK
        netloc = f"{userinfo}@{host}"
    tail, hash_, fragment = tail.partition("#")
    path, q, query = tail.partition("?")
    if query:
        pairs = []
        for pair in query.split("&"):
            name, eq, _value = pair.partition("=")
            pairs.append(f"{name}={MASK}" if eq and _SECRET_NAME.search(unquote(name)) else pair)
        query = "&".join(pairs)
    return f"{scheme}://{netloc}{path}{q}{query}{hash_}{fragment}"


def url_secrets(url: str) -> list[str]:
    """The secret values inside ``url`` (as written and percent-decoded), longest first: what
    `redact_text` masks in a message that may quote them (a driver's error text)."""
    found: set[str] = set()
    try:
        parts = urlsplit(url)
        if parts.password:
            found.add(parts.password)
        for name, value in parse_qsl(parts.query, keep_blank_values=False):
            if _SECRET_NAME.search(name):
                found.add(value)
    except ValueError:
        pass
    found |= {unquote(v) for v in found}
    # a secret of one or two characters would turn every such letter of a message into ***
    return sorted((v for v in found if len(v) >= 3), key=len, reverse=True)


def redact_text(text: str, url: str) -> str:
    """``text`` (an error message about ``url``) with the URL redacted and every secret value of
    the URL masked wherever it appears: drivers sometimes quote the connection string."""
    text = text.replace(url, redact_url(url))
    for secret in url_secrets(url):
        text = text.replace(secret, MASK)
    return text
