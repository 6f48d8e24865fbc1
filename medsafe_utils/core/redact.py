"""Credentials never recorded: a URL with `user:password@` or a token in its query string is
refused where it comes in (parameters, backends), and redacted wherever one is written down
(manifests), in case one slipped through.

    check_url("http://host:8000/v1", "api_base_url")   # fine
    redact_url("https://u:p@host/v1?api_key=x")        # 'https://host/v1?api_key=REDACTED'
"""

from __future__ import annotations

import re
import urllib.parse

REDACTED = "REDACTED"
# Query keys that carry a secret (api_key, access_token, sig, X-Amz-Signature, password, ...).
SECRET_KEY = re.compile(r"key|token|secret|passw|pwd|auth|sig|credential|session", re.I)
URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.I)


def secrets_in(url: str) -> list[str]:
    """What in `url` is a credential: 'user:password@' and each query key that holds a secret."""
    parts = urllib.parse.urlsplit(url)
    found = ["user:password@"] if parts.username is not None or parts.password else []
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    return found + [key for key, _ in query if SECRET_KEY.search(key)]


def redact_url(url: str) -> str:
    """`url` without user and password, and with every secret query value as REDACTED."""
    parts = urllib.parse.urlsplit(url)
    if not secrets_in(url):
        return url
    netloc = parts.netloc.rpartition("@")[2]
    query = [
        (key, REDACTED if SECRET_KEY.search(key) else value)
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ]
    query_text = urllib.parse.urlencode(query, safe="/:")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query_text))


def redact(value):
    """`value` (a string, list or dict, nested) with every URL in it redacted."""
    if isinstance(value, str):
        return URL.sub(lambda m: redact_url(m.group(0)), value)
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    return value


def check_url(url: str | None, where: str) -> str | None:
    """`url` when it carries no credential; else ValueError naming `where` and what to do."""
    if url and (found := secrets_in(url)):
        raise ValueError(
            f"{where}: the URL {redact_url(url)} carries credentials ({', '.join(found)}); "
            "they would be recorded in manifests, the report and executed notebooks. Give the "
            "key through the environment variable named by api_key_env instead"
        )
    return url
