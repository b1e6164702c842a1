"""Deutsch (German). Keys and ``{placeholders}`` as in ``en.py``."""

from __future__ import annotations

MESSAGES: dict[str, str] = {
    # login.html
    "login.title": "Anmelden",
    "login.title_error": "Fehler: Anmelden",
    "login.heading": "Anmelden",
    "login.continue_to": "um mit {client} fortzufahren",
    "login.username": "Benutzername",
    "login.password": "Passwort",
    "login.submit": "Anmelden",
    "login.incorrect": "Benutzername oder Passwort ist falsch.",
    "login.throttled": "Zu viele fehlgeschlagene Anmeldeversuche. Warten Sie {seconds} Sekunden und versuchen Sie "
    "es dann erneut.",
    # consent.html
    "consent.title": "Zugriff erlauben",
    "consent.heading": "{client} erlauben?",
    "consent.asking": "{client} möchte:",
    "consent.signed_in_as": "Angemeldet als {username}.",
    "consent.allow": "Erlauben",
    "consent.deny": "Ablehnen",
    "scope.openid": "Wissen, wer Sie sind (Ihre Konto-ID)",
    "scope.profile": "Ihren Namen und Benutzernamen sehen",
    "scope.email": "Ihre E-Mail-Adresse sehen",
    "scope.offline_access": "Verbunden bleiben, wenn Sie die Anwendung nicht nutzen",
    "scope.other": "„{scope}“ verwenden",
    # logout.html, signed_out.html, signed_in.html
    "logout.title": "Abmelden",
    "logout.heading": "Abmelden?",
    "logout.signed_in_as": "Sie sind als {username} angemeldet.",
    "logout.signed_in": "Sie sind angemeldet.",
    "logout.submit": "Abmelden",
    "signed_out.title": "Abgemeldet",
    "signed_out.heading": "Sie sind abgemeldet",
    "signed_out.body": "Sie können dieses Fenster schließen.",
    "signed_in.title": "Angemeldet",
    "signed_in.heading": "Sie sind angemeldet",
    "signed_in.body": "Kehren Sie zu der Anwendung zurück, von der Sie gekommen sind.",
    # error.html and its messages
    "error.title": "Etwas ist schiefgelaufen",
    "error.heading": "Wir können nicht fortfahren",
    "error.advice": "Kehren Sie zu der Anwendung zurück, von der Sie gekommen sind, und versuchen Sie es erneut. "
    "Wenn das wieder passiert, wenden Sie sich an deren Support.",
    "error.csrf": "Ihr Formular ist abgelaufen oder stammt nicht von dieser Website. Gehen Sie zurück und versuchen "
    "Sie es erneut.",
    "error.invalid_authorization": "Die Anmeldeanfrage ist ungültig: {detail}.",
    "error.malformed_authorization": "Die Autorisierungsanfrage ist fehlerhaft.",
    "error.invalid_consent": "Die Zustimmungsanfrage ist ungültig.",
    "error.no_decision": "Wählen Sie „Erlauben“ oder „Ablehnen“.",
    "error.malformed_logout": "Die Abmeldeanfrage ist fehlerhaft.",
    "error.invalid_logout": "Die Abmeldeanfrage ist ungültig.",
    "error.unregistered_logout_uri": "Die Abmeldeanfrage nennt eine Adresse, die diese Anwendung nicht registriert "
    "hat.",
    # form_post.html
    "form_post.title": "Weiter",
    "form_post.submit": "Weiter",
}
