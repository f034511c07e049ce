"""HTTP routing in front of the classification API: the page, the API, 404/405,
security headers and CORS. An HTTP event in, an HTTP response out, so Lambda
(lambda_function.py) and the local server (inference/_serve.py) run the same code.

Usage:
    from inference._routes import RouteConfig, route
    response = route(event, api=lambda e: lambda_handler_api(e), config=RouteConfig.from_env())

Routes (function URL, API Gateway `$default` or `{proxy+}` routes, local server):
    GET|HEAD /   the listing page (text/html)
    POST /       the API: JSON answer; a multipart form post without
                 `Accept: application/json` gets the HTML result page (no-JS form)
    OPTIONS /    CORS preflight
    other paths  404 NOT_FOUND; other methods 405 METHOD_NOT_ALLOWED (with Allow)
API Gateway routes configured to one method and path (`POST /predict`) were
routed by API Gateway already: they go to the API as they always did.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from inference._page import page_csp, render_page
from inference.env import env_list

Event = dict[str, Any]
Response = dict[str, Any]
Api = Callable[[Event], Response]

ALLOWED_METHODS = ("GET", "HEAD", "POST", "OPTIONS")
CORS_ENV = "CORS_ALLOWED_ORIGINS"
# scheme://host[:port], nothing after it (RFC 6454 serialized origin).
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-]+(:\d{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?")
# Preflight answers cached by the browser for 10 minutes (Chromium caps at 2 h).
CORS_MAX_AGE_S = 600
# Every response: no MIME sniffing, no framing, no referrer leak. JSON answers
# also get a CSP that loads nothing, in case one is opened as a document.
BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
JSON_CSP = "default-src 'none'; frame-ancestors 'none'"


@dataclass(frozen=True)
class RouteConfig:
    """Router settings; `from_env` reads CORS_ALLOWED_ORIGINS.

    cors_origins: origins allowed to call the JSON API from their pages
        (exact match, e.g. "https://shop.example.com"); empty: CORS off.
    """

    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for origin in self.cors_origins:
            match = _ORIGIN.fullmatch(origin)
            port = (match.group(1) or match.group(2)) if match else None
            if not match or (port is not None and not 0 < int(port[1:]) <= 65535):
                raise ValueError(
                    f"`cors_origins` entries must be origins like https://shop.example.com "
                    f"(scheme, host, optional port, no path). Received: {origin!r}"
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> RouteConfig:
        """Origins from env CORS_ALLOWED_ORIGINS (comma-separated; unset or empty: CORS off);
        `overrides` that are not None win.

        Raises:
            ValueError: an entry is not an origin; the message names the env var
                and echoes its value.
        """
        raw = environ.get(CORS_ENV, "")
        origins = tuple(o.rstrip("/") for o in env_list(environ, CORS_ENV))
        try:
            config = cls(cors_origins=origins)
        except ValueError:
            raise ValueError(
                f"Env var {CORS_ENV} must be comma-separated origins like "
                "https://shop.example.com (scheme, host, optional port, no path). "
                f"Received: {CORS_ENV}={raw.strip()!r}"
            ) from None
        return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})


def route(event: Event, *, api: Api, config: RouteConfig) -> Response:
    """Answer one HTTP event (API Gateway v1/v2 or function URL shape).

    api: the classification API, HTTP event -> HTTP response with a JSON body.
    Returns {"statusCode", "headers", "body", "isBase64Encoded"}.
    """
    method = _method(event)
    if _routed_by_gateway(event):
        response = api(event)
    elif _path(event) != "/":
        response = error_response(404, "NOT_FOUND", f"No page at {_path(event)[:100]!r}.")
    elif method in ("GET", "HEAD"):
        response = _page_response(render_page(), status=200, head=method == "HEAD")
    elif method == "POST":
        response = api(event)
        if _wants_html(event):
            response = _html_result(response)
    elif method == "OPTIONS":
        response = {"statusCode": 204, "headers": {"Allow": ", ".join(ALLOWED_METHODS)}, "body": ""}
    else:
        message = f"Use GET for the page or POST for the API. Received: {method[:20]}"
        response = error_response(405, "METHOD_NOT_ALLOWED", message)
        response["headers"]["Allow"] = ", ".join(ALLOWED_METHODS)
    return _with_headers(response, event, config=config, preflight=method == "OPTIONS")


def error_response(status: int, code: str, message: str) -> Response:
    """The API's stable error shape as an HTTP response."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps({"error": {"code": code, "message": message}}),
        "isBase64Encoded": False,
    }


def _page_response(page: str, *, status: int, head: bool = False) -> Response:
    """The page as an HTML response; results and errors are never cached."""
    return {
        "statusCode": status,
        "headers": {
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": page_csp(),
            "Cache-Control": "no-store",
        },
        "body": "" if head else page,
        "isBase64Encoded": False,
    }


def _html_result(api_response: Response) -> Response:
    """The no-JS form's answer: the API's JSON answer rendered into the page."""
    status = int(api_response.get("statusCode", 200))
    try:
        answer = json.loads(api_response.get("body") or "")
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        page = render_page(error_code="UNAVAILABLE")
    elif isinstance(answer.get("error"), dict):
        page = render_page(error_code=str(answer["error"].get("code", "")))
    else:
        page = render_page(answer=answer)
    return _page_response(page, status=status)


def _with_headers(
    response: Response, event: Event, *, config: RouteConfig, preflight: bool
) -> Response:
    headers = dict(response.get("headers") or {})
    for name, value in BASE_HEADERS.items():
        headers.setdefault(name, value)
    if "Content-Security-Policy" not in headers:
        headers["Content-Security-Policy"] = JSON_CSP
    origin = request_header(event, "origin")
    if config.cors_origins:
        headers["Vary"] = "Origin"
        if origin and _origin_key(origin) in {_origin_key(o) for o in config.cors_origins}:
            headers["Access-Control-Allow-Origin"] = origin
            if preflight:
                headers["Access-Control-Allow-Methods"] = "POST"
                headers["Access-Control-Allow-Headers"] = "Content-Type, Accept"
                headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_S)
    return {**response, "headers": headers}


def _origin_key(origin: str) -> str:
    """An origin as browsers serialize it: scheme and host in lower case, no default
    port, so "https://Shop.example.com:443" in the settings matches what a browser sends."""
    origin = origin.lower()
    for scheme, port in (("https://", ":443"), ("http://", ":80")):
        if origin.startswith(scheme) and origin.endswith(port):
            return origin.removesuffix(port)
    return origin


def request_header(event: Event, name: str) -> str:
    """The HTTP event's header `name` (given in lower case), matched case-insensitively;
    "" when absent. Shared by the router and the event parsing (inference/_events.py)."""
    headers = event.get("headers")
    if not isinstance(headers, dict):
        return ""
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name and isinstance(value, str):
            return value
    return ""


def _method(event: Event) -> str:
    http = (event.get("requestContext") or {}).get("http")
    if isinstance(http, dict) and isinstance(http.get("method"), str):
        return str(http["method"]).upper()
    return str(event.get("httpMethod") or "").upper()


def _path(event: Event) -> str:
    """The request path; an HTTP API's rawPath starts with a named stage ("/prod/"),
    which is left out, as a REST API's `path` leaves it out."""
    path = event.get("rawPath") if "rawPath" in event else event.get("path")
    if not isinstance(path, str) or not path:
        return "/"
    stage = (event.get("requestContext") or {}).get("stage")
    if "rawPath" in event and isinstance(stage, str) and stage and stage != "$default":
        prefix = f"/{stage}"
        if path == prefix or path.startswith(prefix + "/"):
            path = path[len(prefix) :] or "/"
    return path


def _routed_by_gateway(event: Event) -> bool:
    """True for API Gateway routes set to one method and path (not `$default`, not a proxy)."""
    route_key = event.get("routeKey")
    if isinstance(route_key, str):
        return route_key != "$default" and "{proxy+}" not in route_key
    resource = event.get("resource")
    if isinstance(resource, str):
        return resource != "/" and "{proxy+}" not in resource
    return False


def _wants_html(event: Event) -> bool:
    """A browser's multipart form post (the no-JS path): it names `text/html` in `Accept`.

    Browsers send `Accept: text/html,...` with a form post; `curl -F` sends `*/*` and
    API clients `application/json`, and both get the JSON answer.
    """
    content_type = request_header(event, "content-type").lower()
    accept = request_header(event, "accept").lower()
    return content_type.startswith("multipart/form-data") and "text/html" in accept
