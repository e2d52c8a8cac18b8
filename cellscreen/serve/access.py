"""Who may use the service: the token every request but the page and the liveness probe must carry, and the
access log kept free of a token given to the page as ``?token=``."""

from __future__ import annotations

import hmac
import logging
import re

from fastapi.responses import JSONResponse

__all__ = ["OPEN_PATHS", "TokenRequired", "HideToken"]

# Answered without the token: the page (which then asks for it), its style and script, and the liveness probe
OPEN_PATHS = frozenset({"/", "/static/page.css", "/static/text.js", "/static/page.js", "/healthz"})


class TokenRequired:
    """ASGI middleware: every request but those for ``OPEN_PATHS`` must carry ``Authorization: Bearer TOKEN``
    (compared in constant time), else ``401``."""

    def __init__(self, app, *, token: str):
        self.app, self.expected = app, token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
            scheme, _, credentials = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials.strip(), self.expected):
                answer = JSONResponse(status_code=401, headers={"WWW-Authenticate": "Bearer"}, content={"detail": {
                    "error": "this server needs its token: send the header 'Authorization: Bearer TOKEN' "
                             "(the page: open it as /?token=TOKEN)", "files": []}})
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


class HideToken(logging.Filter):
    """Keeps a token given to the page as ``?token=`` out of uvicorn's access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and "token=" in str(record.args[2]):
            args = list(record.args)
            args[2] = re.sub(r"token=[^&]*", "token=***", str(args[2]))
            record.args = tuple(args)
        return True
