"""Who may use `merkit serve`: its own page only, from this machine or with its access token.

Every request passes, in order (`Guard`):
1. the Host check (Starlette's TrustedHostMiddleware): a Host that is not an address of the
   server is answered 400, so a web site that rebinds its name to 127.0.0.1 (DNS rebinding)
   reads nothing. On a wildcard address (0.0.0.0, ::) the names are not known in advance, and
   the access token, always required there, guards instead;
2. the access token, when the server has one (always on a non-loopback `--host`): the
   `?token=` of the address the server printed (then kept in a cookie, and dropped from the
   address), or the header `Authorization: Bearer TOKEN`; else 401;
3. on a request that changes something (POST, ...): an `Origin` header, when sent, must be the
   page's own, and the page token must come in the `X-Merkit-Page` header; else 403. The page
   reads that token from /api/config, which no other site's script can read, so a form that a
   foreign page makes the browser send (with or without an Origin) is refused.
Every answer carries `X-Content-Type-Options: nosniff` and a Content-Security-Policy that runs
only the server's own script and style files (no inline code) and forbids framing the page.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence

from starlette.datastructures import MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
WILDCARDS = ("0.0.0.0", "::", "")
PAGE_HEADER = "X-Merkit-Page"
TOKEN_QUERY = "token"
TOKEN_COOKIE = "merkit_token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def is_loopback(host: str) -> bool:
    """Whether `host` (a --host value) is reachable from this machine only."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """Whether `host` listens on every address of the machine (0.0.0.0, ::)."""
    return host.strip("[]") in WILDCARDS


def allowed_hosts(host: str) -> list[str]:
    """The Host names the server answers when it listens on `host`: this machine's loopback
    names and `host` itself; any name on a wildcard address, which a token guards instead."""
    if is_wildcard(host):
        return ["*"]
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return list(dict.fromkeys([*LOOPBACK_NAMES, name.lower()]))


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class Guard:
    """ASGI middleware around the whole app (pages, API, static files); see the module doc."""

    def __init__(
        self, app: ASGIApp, hosts: Sequence[str], token: str | None, page_token: str
    ) -> None:
        self.app, self.token, self.page_token = app, token, page_token
        self.checked = TrustedHostMiddleware(self._check, allowed_hosts=hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan (start and stop) messages
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.checked(scope, receive, with_headers)

    async def _check(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        refusal = self.refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send)
        elif self.token and TOKEN_QUERY in request.query_params and request.method == "GET":
            await self._remember(request)(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def refusal(self, request: Request) -> JSONResponse | None:
        """The answer to a request that must not reach the app; None for one that may."""
        if self.token is not None and not self._has_token(request, self.token):
            return _refuse(
                401,
                "this merkit serve needs its access token: open the address it printed (ending "
                "in ?token=...), or send the header Authorization: Bearer TOKEN",
            )
        if request.method in SAFE_METHODS:
            return None
        host = request.headers.get("host", "").lower()
        origin = request.headers.get("origin")
        if origin is not None and origin.lower() not in (f"http://{host}", f"https://{host}"):
            return _refuse(
                403,
                f"a request from {origin} is refused: merkit serve takes uploads from its own "
                f"page (http://{host}) only",
            )
        if not _same(request.headers.get(PAGE_HEADER, ""), self.page_token):
            return _refuse(
                403,
                f"the request lacks the page's token (the {PAGE_HEADER} header that "
                "/api/config gives); send it from the page, or reload the page",
            )
        return None

    @staticmethod
    def _has_token(request: Request, token: str) -> bool:
        given = [request.query_params.get(TOKEN_QUERY, ""), request.cookies.get(TOKEN_COOKIE, "")]
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given.append(value.strip())
        return any(_same(item, token) for item in given if item)

    def _remember(self, request: Request) -> RedirectResponse:
        """The printed address's token kept in a cookie, and the address without it (so it
        stays out of the browser's history and of links the page makes)."""
        url = request.url.remove_query_params(TOKEN_QUERY)
        target = url.path + (f"?{url.query}" if url.query else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(TOKEN_COOKIE, self.token or "", httponly=True, samesite="lax")
        return response
