"""A small OpenID Connect provider on loopback, for rehearsing the dashboard's single sign-on
(``st.login``) without a real identity provider: discovery, authorization code (with PKCE when
the client sends it), token endpoint with an RS256-signed ID token, JWKS and userinfo.

It signs in whichever account :attr:`OidcProvider.account` names, without a consent page (a
test sets it before the browser is redirected here). Only for drills and tests: it trusts its
own client, keeps codes in memory, and never leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str | None
    claims: dict[str, Any]


@dataclass
class OidcProvider:
    """One client (``client_id``/``client_secret``) and the account that signs in next."""

    issuer: str
    client_id: str = "crisiscomms-dashboard"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    account: dict[str, Any] = field(default_factory=dict)
    """The claims of the person who signs in next: ``sub``, ``email``, ``email_verified``,
    ``name``."""

    def __post_init__(self) -> None:
        from joserfc.jwk import RSAKey

        self._key = RSAKey.generate_key(2048, parameters={"kid": "test-1", "use": "sig"})
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()

    def metadata(self) -> dict[str, Any]:
        return {"issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "jwks_uri": f"{self.issuer}/jwks",
                "end_session_endpoint": f"{self.issuer}/logout",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                          "client_secret_post"],
                "scopes_supported": ["openid", "email", "profile"]}

    def authorize(self, params: dict[str, str]) -> str:
        """The redirect back to the client with a one-time code."""
        if params.get("client_id") != self.client_id or params.get("response_type") != "code":
            raise HTTPException(400, "unknown client or response type")
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._grants[code] = _Grant(self.client_id, params["redirect_uri"],
                                        params.get("nonce"), params.get("code_challenge"),
                                        dict(self.account))
        query = {"code": code, **({"state": params["state"]} if "state" in params else {})}
        return f"{params['redirect_uri']}?{urlencode(query)}"

    def token(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        if client_id != self.client_id or secret != self.client_secret:
            raise HTTPException(401, "bad client credentials")
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            raise HTTPException(400, "invalid_grant")
        if grant.challenge is not None:
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            if digest.rstrip(b"=").decode() != grant.challenge:
                raise HTTPException(400, "PKCE verifier does not match")
        from joserfc import jwt

        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300,
                  **grant.claims, **({"nonce": grant.nonce} if grant.nonce else {})}
        id_token = jwt.encode({"alg": "RS256", "kid": "test-1"}, claims, self._key)
        access = secrets.token_urlsafe(24)
        with self._lock:
            self._grants[f"access:{access}"] = grant
        return {"access_token": access, "token_type": "Bearer", "expires_in": 300,
                "id_token": id_token, "scope": "openid email profile"}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._key.as_dict(private=False)]}

    def app(self) -> FastAPI:
        app = FastAPI(title="test OIDC provider", openapi_url=None)

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return self.metadata()

        @app.get("/authorize")
        def authorize(request: Request) -> RedirectResponse:
            return RedirectResponse(self.authorize(dict(request.query_params)), status_code=302)

        @app.post("/token")
        async def token(request: Request) -> JSONResponse:
            form = {k: str(v) for k, v in (await request.form()).items()}
            return JSONResponse(self.token(form, request.headers.get("authorization")))

        @app.get("/jwks")
        def jwks() -> dict[str, Any]:
            return self.jwks()

        @app.get("/userinfo")
        def userinfo(request: Request) -> dict[str, Any]:
            access = request.headers.get("authorization", "")[7:]
            with self._lock:
                grant = self._grants.get(f"access:{access}")
            if grant is None:
                raise HTTPException(401, "bad token")
            return grant.claims

        @app.get("/logout")
        def logout(post_logout_redirect_uri: str = "") -> RedirectResponse:
            return RedirectResponse(post_logout_redirect_uri or "/", status_code=302)

        return app
