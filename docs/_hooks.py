"""MkDocs hook: render the Sphinx roles used in the library's docstrings as plain code.

Docstrings say ``:class:`DeadlineExceeded``` or ``:class:`~resilient_llm.StreamError```; Markdown turns
the backticks into ``<code>`` and leaves the role name in front. This drops the role, keeps the last
dotted part for a ``~`` target and the title for a ``title <target>`` one.
"""

from __future__ import annotations

import html
import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj|const):<code>([^<]*)</code>")
_TITLED = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")


def _plain(match: re.Match[str]) -> str:
    text = html.unescape(match.group(1)).strip()
    titled = _TITLED.match(text)
    if titled:
        text = titled.group("title")
    elif text.startswith("~"):
        text = text[1:].rsplit(".", 1)[-1]
    return f"<code>{html.escape(text)}</code>"


def on_page_content(html_text: str, **kwargs: Any) -> str:
    return _ROLE.sub(_plain, html_text)
