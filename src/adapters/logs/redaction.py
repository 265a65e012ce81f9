"""Secrets never leave the process in a log line, an error message or a database row.

Redaction works on the final text (after formatting, tracebacks included), so a secret that
reaches a message by any route, an exception's text or a URL in a driver error, is caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "********"


# A secret this long is masked wherever it appears. A shorter one (a database password such
# as "trading") is masked where it stands as a token of its own, so that it does not turn
# `trading_engine` into `********_engine`; a secret is sent as a token (a URL's password, a
# header value), so that is where a leak would show.
ANYWHERE_FROM = 12
_WORD = "A-Za-z0-9_"


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is masked whole.
        unique = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._secrets = unique
        patterns = [
            re.escape(s)
            if len(s) >= ANYWHERE_FROM
            else rf"(?<![{_WORD}]){re.escape(s)}(?![{_WORD}])"
            for s in unique
        ]
        self._pattern = re.compile("|".join(patterns)) if patterns else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def __bool__(self) -> bool:
        return bool(self._secrets)


def url_passwords(*urls: str) -> list[str]:
    """The passwords in connection URLs (`postgresql://user:PASSWORD@host/db`), as written
    and decoded, since a driver may echo either form."""
    found = []
    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password:
            found += [password, unquote(password)]
    return found
