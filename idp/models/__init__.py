"""SQLAlchemy 2.0 typed models, one entity per module; importing this package registers them all."""

from idp.models.api_key import ApiKey
from idp.models.audit_event import AuditEvent
from idp.models.authorization_code import AuthorizationCode
from idp.models.base import Base
from idp.models.client import Client
from idp.models.consent import Consent
from idp.models.grant import Grant
from idp.models.grant_access_token import GrantAccessToken
from idp.models.login_session import LoginSession
from idp.models.refresh_token import RefreshToken
from idp.models.revoked_token import RevokedToken
from idp.models.used_assertion import UsedAssertion
from idp.models.user import User

__all__ = [
    "ApiKey",
    "AuditEvent",
    "AuthorizationCode",
    "Base",
    "Client",
    "Consent",
    "Grant",
    "GrantAccessToken",
    "LoginSession",
    "RefreshToken",
    "RevokedToken",
    "UsedAssertion",
    "User",
]
