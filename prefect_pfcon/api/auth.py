"""pfcon's authentication: one user, HS256 JWTs with a 2-day expiry."""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta, timezone

import jwt
from fastapi import HTTPException, Request

TOKEN_LIFETIME = timedelta(days=2)


class Authenticator:
    """Issues and checks tokens for the configured pfcon user."""

    def __init__(self, user: str, password: str, secret_key: str) -> None:
        self._user = user
        self._password = password
        self._secret_key = secret_key

    def credentials_match(self, user: str, password: str) -> bool:
        """Timing-safe comparison with the configured credentials."""
        user_ok = hmac.compare_digest(user.encode(), self._user.encode())
        password_ok = hmac.compare_digest(password.encode(), self._password.encode())
        return user_ok and password_ok

    def issue_token(self) -> str:
        """A fresh token: claims ``pfcon_user`` and ``exp`` (now + 2 days)."""
        expiry = datetime.now(timezone.utc) + TOKEN_LIFETIME
        return jwt.encode({"pfcon_user": self._user, "exp": expiry}, self._secret_key, "HS256")

    def check_header(self, header: str | None) -> None:
        """Raise a 401 with pfcon's message unless the header carries a valid token."""
        if header is None:
            raise HTTPException(401, "Missing authorization header.")
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token:
            raise HTTPException(401, "Invalid authorization header.")
        try:
            jwt.decode(token, self._secret_key, algorithms=["HS256"], options={"require": ["exp"]})
        except jwt.ExpiredSignatureError:
            raise HTTPException(401, "Expired authorization token.") from None
        except jwt.InvalidTokenError:
            raise HTTPException(401, "Invalid authorization token.") from None

    async def __call__(self, request: Request) -> None:
        """FastAPI dependency guarding every job route."""
        self.check_header(request.headers.get("Authorization"))
