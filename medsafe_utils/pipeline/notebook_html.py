"""Executed notebooks as pages that are safe to open: self-contained (no script or style from a
CDN) and sanitised (every HTML output and Markdown cell through an allow-list, no script, no
event handler, no link or image that leaves the page), under a Content-Security-Policy that
runs no script and loads nothing but the page's own data: images.

    body = notebook_exporter().from_notebook_node(node)[0]
"""

from __future__ import annotations

import functools
from pathlib import Path

import bleach
from bleach.css_sanitizer import CSSSanitizer

TEMPLATES = Path(__file__).with_name("templates")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'"
)
# What pandas tables, Markdown cells and the notebooks' own outputs use; anything else shows
# as text (a model's <script> is printed, not run).
TAGS = {
    *"p br hr h1 h2 h3 h4 h5 h6 a abbr b i em strong code pre kbd blockquote ul ol li".split(),
    *"table thead tbody tfoot tr th td caption colgroup col div span sub sup del dl dt dd".split(),
    *"details summary".split(),
}
ATTRIBUTES = {
    "*": ["class", "id", "title"],
    "a": ["href", "title"],
    "th": ["colspan", "rowspan", "style"],
    "td": ["colspan", "rowspan", "style"],
    "tr": ["style"],
    "table": ["border"],
}
_cleaner = bleach.Cleaner(
    tags=TAGS,
    attributes=ATTRIBUTES,
    protocols=[],  # links within the page only ('#Title'): no http(s), javascript: or data:
    css_sanitizer=CSSSanitizer(allowed_css_properties=["text-align"]),
    strip=False,
)


def clean_html(html: str | bytes) -> str:
    """`html` with every tag, attribute and URL outside the allow-list escaped or removed."""
    return _cleaner.clean(html.decode() if isinstance(html, bytes) else str(html))


@functools.cache
def notebook_exporter():
    """nbconvert's HTMLExporter on the offline template, sanitising with clean_html."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    # streams drawn as a notebook draws them: a text progress bar shows its last state only
    coalesce = Config({"CoalesceStreamsPreprocessor": {"enabled": True}})
    return HTMLExporter(
        config=coalesce,
        extra_template_basedirs=[str(TEMPLATES)],
        template_name="offline",
        sanitize_html=True,
        filters={"clean_html": clean_html},  # nbconvert's own escapes every table and heading
    )


def render(node, name: str) -> str:
    """One notebook node as a safe, self-contained HTML page."""
    resources = {"metadata": {"name": name}, "content_security_policy": CONTENT_SECURITY_POLICY}
    body, _ = notebook_exporter().from_notebook_node(node, resources=resources)
    return body
