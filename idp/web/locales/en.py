"""English: the reference catalog. Values are plain text; ``{name}`` placeholders are filled HTML-escaped."""

from __future__ import annotations

MESSAGES: dict[str, str] = {
    # login.html
    "login.title": "Sign in",
    "login.title_error": "Error: Sign in",
    "login.heading": "Sign in",
    "login.continue_to": "to continue to {client}",
    "login.username": "Username",
    "login.password": "Password",
    "login.submit": "Sign in",
    "login.incorrect": "Incorrect username or password.",
    "login.throttled": "Too many failed sign-in attempts. Wait {seconds} seconds, then try again.",
    # consent.html
    "consent.title": "Allow access",
    "consent.heading": "Allow {client}?",
    "consent.asking": "{client} is asking to:",
    "consent.signed_in_as": "Signed in as {username}.",
    "consent.allow": "Allow",
    "consent.deny": "Deny",
    "scope.openid": "Know who you are (your account id)",
    "scope.profile": "See your name and username",
    "scope.email": "See your email address",
    "scope.offline_access": "Stay connected when you are not using it",
    "scope.other": "Use “{scope}”",
    # logout.html, signed_out.html, signed_in.html
    "logout.title": "Sign out",
    "logout.heading": "Sign out?",
    "logout.signed_in_as": "You are signed in as {username}.",
    "logout.signed_in": "You are signed in.",
    "logout.submit": "Sign out",
    "signed_out.title": "Signed out",
    "signed_out.heading": "You are signed out",
    "signed_out.body": "You can close this window.",
    "signed_in.title": "Signed in",
    "signed_in.heading": "You are signed in",
    "signed_in.body": "Return to the application you came from.",
    # error.html and its messages
    "error.title": "Something went wrong",
    "error.heading": "We can't continue",
    "error.advice": "Go back to the application you came from and try again. If this keeps happening, "
    "contact its support.",
    "error.csrf": "Your form expired or did not come from this site. Go back and try again.",
    "error.invalid_authorization": "The sign-in request is not valid: {detail}.",
    "error.malformed_authorization": "The authorization request is malformed.",
    "error.invalid_consent": "The consent request is not valid.",
    "error.no_decision": "Choose Allow or Deny.",
    "error.malformed_logout": "The sign-out request is malformed.",
    "error.invalid_logout": "The sign-out request is not valid.",
    "error.unregistered_logout_uri": "The sign-out request names an address this application did not register.",
    # form_post.html
    "form_post.title": "Continue",
    "form_post.submit": "Continue",
}
