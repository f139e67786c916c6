"""Who may frame the sign-in and consent pages (clickjacking protection).

An EHR that embeds a SMART app in an iframe (SMART App Launch 2.2 "EHR launch") shows our
sign-in and consent pages inside that frame, so those pages must allow the EHR as a frame
ancestor -- and no one else, or any site could frame the consent page and trick a person
into pressing *Allow* (OWASP "Clickjacking Defense").

- With no frame ancestors (no EHR client registered an origin, ``SELFBACK_FRAME_ANCESTORS``
  empty): ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``, as before.
- With some: ``frame-ancestors <origins>`` and *no* ``X-Frame-Options``: it cannot name
  origins (ALLOW-FROM is obsolete and ignored), and ``DENY`` beside an allow-list would
  contradict it (CSP Level 2 section 7.7 makes frame-ancestors govern where both are sent).

The sign-in cookie that binds a flow to the browser is ``SameSite=Lax``, which a browser
neither stores nor sends inside a cross-site frame. A page requested as a frame
(``Sec-Fetch-Dest: iframe``) while framing is allowed therefore gets the cookie as
``SameSite=None; Secure; Partitioned`` (CHIPS): kept for that top-level site only, so
framing does not make it a third-party tracking cookie. ``Secure`` needs https (browsers
also accept it from http://localhost and 127.0.0.1).
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie

from starlette.responses import Response

from fhir_server.auth.authorize import COOKIE
from fhir_server.auth.policy import LOGIN_FLOW_TTL

_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def framing_headers(frame_ancestors: tuple[str, ...]) -> dict[str, str]:
    """The CSP (and X-Frame-Options) of a sign-in page for these ancestors (pure)."""
    if not frame_ancestors:
        return {
            "Content-Security-Policy": f"{_PAGE_CSP}; frame-ancestors 'none'",
            "X-Frame-Options": "DENY",
        }
    return {"Content-Security-Policy": f"{_PAGE_CSP}; frame-ancestors {' '.join(frame_ancestors)}"}


def apply_framing(response: Response, frame_ancestors: tuple[str, ...], framed: bool) -> Response:
    """Set the framing headers on a page of /auth/authorize; re-issue its sign-in cookie
    for a frame when the page is requested as one and framing is allowed."""
    if not response.headers.get("content-type", "").startswith("text/html"):
        return response  # a redirect back to the app: nothing to frame
    for name in ("Content-Security-Policy", "X-Frame-Options"):
        if name in response.headers:
            del response.headers[name]
    response.headers.update(framing_headers(frame_ancestors))
    if framed and frame_ancestors:
        value = _sign_in_cookie(response)
        if value is not None:
            del response.headers["set-cookie"]
            # Written out: http.cookies learns "Partitioned" only in Python 3.14.
            response.headers.append(
                "set-cookie",
                f"{COOKIE}={value}; Max-Age={LOGIN_FLOW_TTL}; Path=/; HttpOnly; "
                "SameSite=None; Secure; Partitioned",
            )
    return response


def _sign_in_cookie(response: Response) -> str | None:
    for header in response.headers.getlist("set-cookie"):
        try:
            cookie = SimpleCookie(header)
        except CookieError:
            continue
        if COOKIE in cookie:
            return cookie[COOKIE].value
    return None
