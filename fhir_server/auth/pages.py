"""The sign-in and consent pages: plain HTML forms that work without JavaScript.

Every form posts back to ``/auth/authorize`` with the hidden ``flow`` handle and an
``action`` (the buttons' ``name="action"`` values). Pure functions: data in, HTML out;
every value is escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from fhir_server.access.scopes import parse_resource_scope
from fhir_server.auth.messages import LOCALES, TEXT, describe_scope, text

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f4f6f8;color:#1d2733}
main{max-width:30rem;margin:2rem auto;background:#fff;padding:1.5rem 2rem;border-radius:.5rem;
box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem}
label{display:block;font-weight:600;margin-top:.8rem}
input[type=text],input[type=tel],input[type=password]{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}
.help{color:#55606e;font-size:.9rem;margin:.2rem 0}
button{margin-top:1rem;padding:.55rem 1.2rem;font-size:1rem;border-radius:.3rem;border:1px solid #1f5fa8;
background:#1f5fa8;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#1f5fa8}
.error{background:#fdecea;border:1px solid #e0a39d;padding:.6rem;border-radius:.3rem}
ul.scopes{list-style:none;padding:0}ul.scopes li{margin:.4rem 0}
code{font-size:.8rem;color:#55606e}
.languages{float:right}.languages button{margin:0;padding:.2rem .5rem;font-size:.8rem}
"""


@dataclass(frozen=True, slots=True)
class ScopeChoice:
    scope: str
    checked: bool = True


def page(locale: str, title: str, body: str, *, flow: str | None = None) -> str:
    switcher = ""
    if flow:
        # One small form per other language: no JavaScript needed to switch.
        switcher = "".join(
            '<form class="languages" method="post" action="authorize">'
            f'<input type="hidden" name="flow" value="{escape(flow)}">'
            f'<input type="hidden" name="locale" value="{code}">'
            f'<button class="secondary" name="action" value="locale" lang="{code}">'
            f"{escape(TEXT[code]['language'])}</button></form>"
            for code in LOCALES
            if code != locale
        )
    return (
        f'<!DOCTYPE html><html lang="{escape(locale)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{switcher}{body}</main></body></html>"
    )


def _error(message: str | None) -> str:
    return f'<p class="error" role="alert">{escape(message)}</p>' if message else ""


def _form(flow: str, inner: str) -> str:
    return (
        '<form method="post" action="authorize">'
        f'<input type="hidden" name="flow" value="{escape(flow)}">{inner}</form>'
    )


def _field(
    name: str, label: str, help_text: str = "", *, kind: str = "text", extra: str = ""
) -> str:
    help_html = f'<p class="help" id="{name}-help">{escape(help_text)}</p>' if help_text else ""
    described = f' aria-describedby="{name}-help"' if help_text else ""
    return (
        f'<label for="{name}">{escape(label)}</label>{help_html}'
        f'<input type="{kind}" id="{name}" name="{name}"{described} {extra}>'
    )


def _button(action: str, label: str, *, secondary: bool = False) -> str:
    css = ' class="secondary"' if secondary else ""
    return f'<button{css} name="action" value="{action}">{escape(label)}</button>'


def start_page(locale: str, flow: str, app: str, error: str | None = None) -> str:
    t = lambda key, **v: text(locale, key, **v)  # noqa: E731
    body = (
        f"<h1>{escape(t('title'))}</h1><p>{escape(t('app_wants_access', app=app))}</p>{_error(error)}"
        f"<h2>{escape(t('activation_heading'))}</h2>"
        + _form(
            flow,
            _field(
                "activation_code",
                t("activation_label"),
                t("activation_help"),
                extra='autocomplete="off" autocapitalize="characters"',
            )
            + _button("activate", t("continue")),
        )
        + f"<h2>{escape(t('returning_heading'))}</h2>"
        + _form(
            flow,
            _field(
                "phone", t("phone_label"), t("phone_help"), kind="tel", extra='autocomplete="tel"'
            )
            + _button("phone", t("send_code")),
        )
        + f"<h2>{escape(t('clinician_heading'))}</h2>"
        + _form(
            flow,
            _field("username", t("username"), extra='autocomplete="username"')
            + _field(
                "password", t("password"), kind="password", extra='autocomplete="current-password"'
            )
            + _button("password", t("sign_in")),
        )
    )
    return page(locale, t("title"), body, flow=flow)


def phone_page(locale: str, flow: str, error: str | None = None) -> str:
    t = lambda key, **v: text(locale, key, **v)  # noqa: E731
    body = (
        f"<h1>{escape(t('phone_heading'))}</h1><p>{escape(t('phone_intro'))}</p>{_error(error)}"
        + _form(
            flow,
            _field(
                "phone", t("phone_label"), t("phone_help"), kind="tel", extra='autocomplete="tel"'
            )
            + _button("phone", t("send_code"))
            + " "
            + _button("restart", t("start_over"), secondary=True),
        )
    )
    return page(locale, t("phone_heading"), body, flow=flow)


def otp_page(locale: str, flow: str, phone: str, error: str | None = None) -> str:
    t = lambda key, **v: text(locale, key, **v)  # noqa: E731
    body = (
        f"<h1>{escape(t('otp_heading'))}</h1><p>{escape(t('otp_intro', phone=phone))}</p>{_error(error)}"
        + _form(
            flow,
            _field(
                "otp",
                t("otp_label"),
                extra='inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}"',
            )
            + _button("otp", t("verify"))
            + " "
            + _button("resend", t("resend"), secondary=True)
            + " "
            + _button("restart", t("start_over"), secondary=True),
        )
    )
    return page(locale, t("otp_heading"), body, flow=flow)


def totp_page(locale: str, flow: str, error: str | None = None) -> str:
    """The second factor of a clinician who enrolled TOTP (RFC 6238), after the password."""
    t = lambda key, **v: text(locale, key, **v)  # noqa: E731
    body = (
        f"<h1>{escape(t('totp_heading'))}</h1><p>{escape(t('totp_intro'))}</p>{_error(error)}"
        + _form(
            flow,
            _field(
                "totp",
                t("totp_label"),
                extra='inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" '
                'maxlength="6"',
            )
            + _button("totp", t("verify"))
            + " "
            + _button("restart", t("start_over"), secondary=True),
        )
    )
    return page(locale, t("totp_heading"), body, flow=flow)


def consent_page(
    locale: str,
    flow: str,
    app: str,
    who: str,
    choices: list[ScopeChoice],
    *,
    ask_patient: bool,
    patient: str | None,
    error: str | None = None,
) -> str:
    t = lambda key, **v: text(locale, key, **v)  # noqa: E731
    items = "".join(
        f'<li><label><input type="checkbox" name="scope" value="{escape(c.scope)}"'
        f"{' checked' if c.checked else ''}> "
        f"{escape(describe_scope(locale, c.scope, parse_resource_scope(c.scope)))} "
        f"<code>{escape(c.scope)}</code></label></li>"
        for c in choices
    )
    patient_html = ""
    if ask_patient:
        patient_html = _field("patient", t("patient_label"), t("patient_help"))
    elif patient:
        patient_html = f"<p>{escape(t('patient_context', patient=patient))}</p>"
    body = (
        f"<h1>{escape(t('consent_heading'))}</h1><p>{escape(t('signed_in_as', who=who))}</p>"
        f"{_error(error)}<p>{escape(t('consent_intro', app=app))}</p>"
        + _form(
            flow,
            f'<ul class="scopes">{items}</ul>{patient_html}'
            + _button("approve", t("allow"))
            + " "
            + _button("deny", t("deny"), secondary=True),
        )
    )
    return page(locale, t("consent_heading"), body, flow=flow)


def error_page(locale: str, message: str, detail: str = "") -> str:
    t = lambda key, **v: text(locale, key, **v)  # noqa: E731
    body = f"<h1>{escape(t('error_title'))}</h1><p>{escape(message)}</p>"
    if detail:
        body += f"<p><code>{escape(detail)}</code></p>"
    return page(locale, t("error_title"), body)
