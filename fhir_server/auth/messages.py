"""What the sign-in and consent pages say, in English and Danish.

Pages pick a language from the ``ui_locales`` authorize parameter (OIDC Core 3.1.2.1), then
the ``Accept-Language`` header; the person can switch on every page.
"""

from __future__ import annotations

from fhir_server.access.scopes import (
    FHIR_USER,
    LAUNCH,
    LAUNCH_ENCOUNTER,
    LAUNCH_PATIENT,
    OFFLINE_ACCESS,
    ONLINE_ACCESS,
    OPENID,
    PROFILE,
    ResourceScope,
)

LOCALES = ("en", "da")
DEFAULT_LOCALE = "en"

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "language": "English",
        "title": "Sign in",
        "app_wants_access": "{app} asks to connect to your SelfBack data.",
        "activation_heading": "New here? Use your activation code",
        "activation_label": "Activation code",
        "activation_help": "The code from your clinician, e.g. ABCD-EFGH-JKMN.",
        "continue": "Continue",
        "returning_heading": "Signed up already? Sign in with your phone",
        "phone_label": "Mobile phone number",
        "phone_help": "With country code, e.g. +45 12 34 56 78.",
        "send_code": "Send code",
        "clinician_heading": "Clinician sign-in",
        "username": "User name",
        "password": "Password",
        "sign_in": "Sign in",
        "phone_heading": "Your mobile phone",
        "phone_intro": "We send a 6-digit code to this number to check it is yours.",
        "otp_heading": "Enter the code",
        "otp_intro": "We sent a 6-digit code by SMS to {phone}. It works for 5 minutes.",
        "otp_label": "6-digit code",
        "verify": "Confirm",
        "resend": "Send a new code",
        "start_over": "Start again",
        "totp_heading": "Enter the code from your authenticator app",
        "totp_intro": "Your account has a second sign-in step. Open your authenticator app "
        "and enter the 6-digit code it shows for SelfBack.",
        "totp_label": "6-digit code",
        "consent_heading": "Allow access?",
        "consent_intro": "{app} asks for permission to:",
        "signed_in_as": "Signed in as {who}.",
        "patient_label": "Patient (id)",
        "patient_help": "The patient whose record the app may open.",
        "patient_context": "Patient: {patient}",
        "allow": "Allow",
        "deny": "Deny",
        "sms_body": "Your SelfBack code is {code}. It expires in 5 minutes. Never share it.",
        "error_title": "This request cannot be completed",
        "error_activation_invalid": "That activation code is not valid. Check it and try again.",
        "error_activation_locked": "Too many wrong activation codes. Please try again later.",
        "error_activation_used": "That activation code has been used already. Ask your clinician for a new one.",
        "error_phone_invalid": "Enter the number with its country code, e.g. +45 12 34 56 78.",
        "error_phone_taken": "This phone number belongs to another SelfBack account.",
        "error_sms_throttled": "Please wait a little before asking for another code.",
        "error_sms_failed": "We could not send the SMS. Please try again later.",
        "error_otp_invalid": "That code is not right. Please try again.",
        "error_otp_expired": "That code has expired or was tried too often. Ask for a new code.",
        "error_otp_locked": "Too many wrong codes for this number. Please try again in an hour.",
        "error_password_invalid": "The user name or password is wrong.",
        "error_password_locked": "Too many failed sign-ins. Please try again later.",
        "error_totp_invalid": "That code is not right. Check your phone's clock and try again.",
        "error_totp_used": "That code has been used already. Wait for the next code.",
        "error_totp_locked": "Too many wrong codes. Please try again later.",
        "error_flow_expired": "This sign-in has expired. Please start again from the app.",
        "error_patient_unknown": "No patient with that id is known.",
        "error_unknown_action": "Something went wrong. Please try again.",
        "error_bad_client": "The app that sent you here is not registered.",
        "error_bad_request": "The app sent an invalid sign-in request.",
        "scope_of_patient": "about the patient",
        "scope_of_user": "you have access to",
        "scope_of_system": "on the whole server",
        "all_data": "all data",
        "perm_c": "create",
        "perm_r": "read",
        "perm_u": "change",
        "perm_d": "delete",
        "perm_s": "search",
        "where": "where",
        "scope_" + OPENID: "Confirm who you are",
        "scope_" + FHIR_USER: "Know your user record",
        "scope_" + PROFILE: "See your basic profile",
        "scope_" + OFFLINE_ACCESS: "Stay connected after you close the app",
        "scope_" + ONLINE_ACCESS: "Stay connected while you are signed in",
        "scope_" + LAUNCH: "Open in the context your system chose",
        "scope_" + LAUNCH_PATIENT: "Know which patient is selected",
        "scope_" + LAUNCH_ENCOUNTER: "Know which encounter is selected",
    },
    "da": {
        "language": "Dansk",
        "title": "Log ind",
        "app_wants_access": "{app} beder om adgang til dine SelfBack-data.",
        "activation_heading": "Ny bruger? Brug din aktiveringskode",
        "activation_label": "Aktiveringskode",
        "activation_help": "Koden fra din behandler, fx ABCD-EFGH-JKMN.",
        "continue": "Fortsæt",
        "returning_heading": "Allerede oprettet? Log ind med din telefon",
        "phone_label": "Mobilnummer",
        "phone_help": "Med landekode, fx +45 12 34 56 78.",
        "send_code": "Send kode",
        "clinician_heading": "Log ind som behandler",
        "username": "Brugernavn",
        "password": "Adgangskode",
        "sign_in": "Log ind",
        "phone_heading": "Dit mobilnummer",
        "phone_intro": "Vi sender en 6-cifret kode til nummeret for at se, at det er dit.",
        "otp_heading": "Indtast koden",
        "otp_intro": "Vi har sendt en 6-cifret kode på SMS til {phone}. Den virker i 5 minutter.",
        "otp_label": "6-cifret kode",
        "verify": "Bekræft",
        "resend": "Send en ny kode",
        "start_over": "Start forfra",
        "totp_heading": "Indtast koden fra din godkendelsesapp",
        "totp_intro": "Din konto har et ekstra trin ved log-ind. Åbn din godkendelsesapp, "
        "og indtast den 6-cifrede kode, den viser for SelfBack.",
        "totp_label": "6-cifret kode",
        "consent_heading": "Giv adgang?",
        "consent_intro": "{app} beder om lov til at:",
        "signed_in_as": "Logget ind som {who}.",
        "patient_label": "Patient (id)",
        "patient_help": "Den patient, hvis journal appen må åbne.",
        "patient_context": "Patient: {patient}",
        "allow": "Tillad",
        "deny": "Afvis",
        "sms_body": "Din SelfBack-kode er {code}. Den udløber om 5 minutter. Del den aldrig.",
        "error_title": "Forespørgslen kan ikke gennemføres",
        "error_activation_invalid": "Aktiveringskoden er ikke gyldig. Tjek den og prøv igen.",
        "error_activation_locked": "For mange forkerte aktiveringskoder. Prøv igen senere.",
        "error_activation_used": "Aktiveringskoden er allerede brugt. Bed din behandler om en ny.",
        "error_phone_invalid": "Skriv nummeret med landekode, fx +45 12 34 56 78.",
        "error_phone_taken": "Telefonnummeret hører til en anden SelfBack-konto.",
        "error_sms_throttled": "Vent lidt, før du beder om en ny kode.",
        "error_sms_failed": "Vi kunne ikke sende SMS'en. Prøv igen senere.",
        "error_otp_invalid": "Koden er forkert. Prøv igen.",
        "error_otp_expired": "Koden er udløbet eller prøvet for mange gange. Bed om en ny kode.",
        "error_otp_locked": "For mange forkerte koder til dette nummer. Prøv igen om en time.",
        "error_password_invalid": "Brugernavn eller adgangskode er forkert.",
        "error_password_locked": "For mange mislykkede forsøg. Prøv igen senere.",
        "error_totp_invalid": "Koden er forkert. Tjek uret på din telefon, og prøv igen.",
        "error_totp_used": "Koden er allerede brugt. Vent på den næste kode.",
        "error_totp_locked": "For mange forkerte koder. Prøv igen senere.",
        "error_flow_expired": "Log-ind er udløbet. Start forfra fra appen.",
        "error_patient_unknown": "Der findes ingen patient med det id.",
        "error_unknown_action": "Noget gik galt. Prøv igen.",
        "error_bad_client": "Appen, der sendte dig hertil, er ikke registreret.",
        "error_bad_request": "Appen sendte en ugyldig log-ind-forespørgsel.",
        "scope_of_patient": "om patienten",
        "scope_of_user": "som du har adgang til",
        "scope_of_system": "på hele serveren",
        "all_data": "alle data",
        "perm_c": "oprette",
        "perm_r": "læse",
        "perm_u": "ændre",
        "perm_d": "slette",
        "perm_s": "søge i",
        "where": "hvor",
        "scope_" + OPENID: "Bekræfte hvem du er",
        "scope_" + FHIR_USER: "Kende din brugerprofil",
        "scope_" + PROFILE: "Se din grundlæggende profil",
        "scope_" + OFFLINE_ACCESS: "Forblive forbundet, efter du har lukket appen",
        "scope_" + ONLINE_ACCESS: "Forblive forbundet, mens du er logget ind",
        "scope_" + LAUNCH: "Åbne i den sammenhæng, dit system valgte",
        "scope_" + LAUNCH_PATIENT: "Vide hvilken patient der er valgt",
        "scope_" + LAUNCH_ENCOUNTER: "Vide hvilken kontakt der er valgt",
    },
}


def text(locale: str, key: str, **values: str) -> str:
    table = TEXT.get(locale, TEXT[DEFAULT_LOCALE])
    template = table.get(key) or TEXT[DEFAULT_LOCALE].get(key) or key
    return template.format(**values) if values else template


def pick_locale(ui_locales: str | None, accept_language: str | None) -> str:
    """The first supported language in ``ui_locales``, then in ``Accept-Language``."""
    for candidate in (ui_locales or "").split():
        primary = candidate.split("-")[0].lower()
        if primary in LOCALES:
            return primary
    weighted: list[tuple[float, str]] = []
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        weighted.append((quality, tag.split("-")[0].lower()))
    for _, tag in sorted(weighted, key=lambda w: -w[0]):
        if tag in LOCALES:
            return tag
    return DEFAULT_LOCALE


def describe_scope(locale: str, scope: str, parsed: ResourceScope | None) -> str:
    """A person-readable line for one scope on the consent page."""
    if parsed is None:
        key = "scope_" + scope
        table = TEXT.get(locale, TEXT[DEFAULT_LOCALE])
        return table.get(key, scope)
    verbs = [text(locale, "perm_" + p) for p in "cruds" if p in parsed.permissions]
    what = text(locale, "all_data") if parsed.resource_type == "*" else parsed.resource_type
    line = f"{', '.join(verbs).capitalize()}: {what} {text(locale, 'scope_of_' + parsed.context)}"
    if parsed.query:
        line += f" ({text(locale, 'where')} " + ", ".join(f"{k}={v}" for k, v in parsed.query) + ")"
    return line
