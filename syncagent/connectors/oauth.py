"""OAuth2 authorization code with single-use refresh tokens that rotate at every refresh.

Some platforms (Mercado Livre) answer every refresh with a new refresh token and kill the old one
at once. Whoever loses the new one has locked the seller out until the seller authorizes the app
again. So the tokens live in the channel's `ConnectorState` (the journal), never only in memory:

* the journal is the source of truth: a refresh always starts from the refresh token stored
  there (another process, e.g. ``syncagent auth``, may have stored a newer one);
* the answer of a refresh is stored, durably, before anything else happens, and only then is
  the new access token used;
* the refresh POST is never repeated with the same refresh token (a retry after a lost answer
  would use a dead token); a refusal (``invalid_grant``) first re-reads the store: a newer token
  stored meanwhile is used; otherwise the seller's authorization is lost and the channel stops
  with a status that says which command gives it back. The lock-out is stored too, so later
  cycles do not knock with the dead token again.

The one window no client can close: the platform rotated the token and its answer never reached
the store (the answer lost on the wire, or the process killed between receiving and storing it).
That ends in the clear status above, never in a silent failure.

A platform whose app receives its first refresh token outside the agent (an App installed in the
store hands it over) gives it in the config: `seed`. It is stored when the journal holds none, or
when the config's value changed since it was stored (the operator put a new one there); as long as
the config keeps the value it was seeded from, the journal's newer token wins.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from syncagent import failpoints, fastjson
from syncagent.connectors.base import ConnectorState
from syncagent.errors import AuthError, ChannelError, TransientError
from syncagent.http import HttpClient, HttpResponse, redact

STATE_KEY = "oauth"  # one JSON value: tokens, expiry and user change together or not at all


def _parse_tokens(name: str, what: str, resp: HttpResponse) -> dict[str, Any]:
    """The token answer as a dict with an access token; its text is never quoted (it holds new secrets)."""
    try:
        body = fastjson.loads(resp.content)
    except (ValueError, UnicodeDecodeError):
        body = None
    problem = fastjson.problem_of(body)
    if problem is not None or not isinstance(body, dict):
        raise TransientError(f"{name}: {what} gave an unusable answer", status=resp.status, code="bad_response")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise TransientError(f"{name}: {what} gave no access_token", status=resp.status, code="bad_response")
    return body


def oauth_error(resp: HttpResponse) -> tuple[str | None, str | None]:
    """An RFC 6749 error answer's code and text ({"error": "invalid_grant", "error_description": ...});
    a platform's own envelope ({"error": {"code", "message"}}) is read too."""
    try:
        body = fastjson.loads(resp.content)
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        text = body.get("error_description") or body.get("message")
        return body["error"], str(text) if text is not None else None
    return resp.error_code(), resp.error_message()


def token_doc(body: Mapping[str, Any], *, now: float, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What is stored of a token answer: the new tokens, when the access token expires, whose they are."""
    previous = previous or {}
    try:
        lifetime = float(body.get("expires_in") or 21600)
    except (TypeError, ValueError):
        lifetime = 21600.0
    refresh = body.get("refresh_token")
    user = body.get("user_id", previous.get("user_id"))
    doc = {"access_token": str(body["access_token"]),
           "refresh_token": str(refresh) if isinstance(refresh, str) and refresh else previous.get("refresh_token"),
           "expires_at": now + max(lifetime, 1.0), "user_id": str(user) if user is not None else None}
    if previous.get("seed"):  # which config value the chain started from (see `RotatingRefreshAuth`)
        doc["seed"] = previous["seed"]
    return doc


def seed_mark(token: str) -> str:
    """What the journal keeps of the config's first refresh token: enough to tell it changed, not the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def load_doc(state: ConnectorState) -> dict[str, Any]:
    """The stored tokens ({} when the seller never authorized the app, or the value is unreadable)."""
    return parse_doc(state.get(STATE_KEY))


def parse_doc(text: str | None) -> dict[str, Any]:
    """A stored value as tokens ({} for none or an unreadable one)."""
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def exchange_code(client: HttpClient, state: ConnectorState, *, client_id: str, client_secret: str, code: str,
                  redirect_uri: str, token_path: str = "/oauth/token",
                  wall: Callable[[], float] = time.time) -> dict[str, Any]:
    """The first authorization: the code the consent page handed out, exchanged and stored (durably)."""
    secrets = (client_secret, code)
    try:
        resp = client.request("POST", token_path, authenticated=False, idempotent=False, data={
            "grant_type": "authorization_code", "client_id": client_id, "client_secret": client_secret,
            "code": code, "redirect_uri": redirect_uri})
    except ChannelError as exc:
        exc.args = (redact(str(exc), secrets),)
        raise
    if resp.status != 200:
        code, text = oauth_error(resp)
        raise AuthError(redact(f"{client.name}: the authorization code was refused: {code or resp.status}: "
                               f"{text or 'no message'} (a code works once and expires within minutes: open the "
                               "URL again for a new one)", secrets), status=resp.status, code=code, target=client.name)
    doc = token_doc(_parse_tokens(client.name, f"POST {token_path}", resp), now=wall())
    state.put(STATE_KEY, json.dumps(doc))
    return doc


class RotatingRefreshAuth:
    """Bearer tokens of one seller, refreshed through the journal as the module says; thread-safe."""

    def __init__(self, token_client: HttpClient, client_id: str, client_secret: str, state: ConnectorState, *,
                 channel: str, reauthorize: str, platform: str = "the platform", token_path: str = "/oauth/token",
                 seed: str | None = None, remedy: str | None = None,
                 wall: Callable[[], float] = time.time, margin: float = 300.0) -> None:
        self.client = token_client
        self.client_id = client_id
        self.client_secret = client_secret
        self.state = state
        self.channel = channel
        self.reauthorize = reauthorize  # the command that gives the authorization back
        self.remedy = remedy  # or, where no command can, what the operator does instead
        self.seed = seed or None  # the first refresh token, from the config (module docstring)
        self.platform = platform
        self.token_path = token_path
        self.wall = wall
        self.margin = margin
        self.secrets: tuple[str, ...] = tuple(s for s in (client_secret, self.seed) if s)
        self.refreshes = 0
        self._doc: dict[str, Any] = {}
        self._headers: dict[str, str] | None = None
        self._lock = threading.Lock()

    @property
    def user_id(self) -> str | None:
        """The seller the tokens were issued for (the platform's user id)."""
        with self._lock:
            if not self._doc:
                self._adopt(self._read()[1])
            value = self._doc.get("user_id")
            return str(value) if value else None

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._headers is None or self.wall() >= self._doc.get("expires_at", 0) - self.margin:
                self._adopt(self._read()[1])  # the journal first: a newer token may be there
                if self._headers is None or self.wall() >= self._doc.get("expires_at", 0) - self.margin:
                    self._refresh()
            assert self._headers is not None
            return self._headers

    def refresh(self, stale: dict[str, str]) -> bool:
        """A 401 on a call: renew, unless the token changed since `stale` (here or in the journal)."""
        with self._lock:
            if self._headers is not None and stale is not self._headers:
                return True
            stored = self._read()[1]
            if stored.get("access_token") and stored.get("access_token") != self._doc.get("access_token") \
                    and self.wall() < stored.get("expires_at", 0) - self.margin:
                self._adopt(stored)
                return True
            self._adopt(stored)
            self._refresh()
            return True

    def close(self) -> None:
        self.client.close()

    # -- inside the lock ---------------------------------------------------------------------------
    def _read(self) -> tuple[str | None, dict[str, Any]]:
        """The stored value and tokens, seeded from the config first if it holds none or an older seed.

        Compare-and-set: a process that stored a rotated token meanwhile is never overwritten.
        """
        for _ in range(3):
            text = self.state.get(STATE_KEY)
            doc = parse_doc(text)
            if self.seed is None or doc.get("seed") == seed_mark(self.seed):
                return text, doc
            seeded = {"access_token": None, "refresh_token": self.seed, "expires_at": 0,
                      "user_id": doc.get("user_id"), "seed": seed_mark(self.seed)}
            value = json.dumps(seeded)
            if self.state.put_if(STATE_KEY, value, text):
                return value, seeded
        text = self.state.get(STATE_KEY)
        return text, parse_doc(text)

    def _adopt(self, doc: dict[str, Any]) -> None:
        self._doc = doc
        token = doc.get("access_token")
        previous = self._headers.get("Authorization", "")[len("Bearer "):] if self._headers else ""
        self._headers = {"Authorization": f"Bearer {token}"} if token and not doc.get("locked") else None
        # the tokens are secrets too: a server may quote one while rejecting it
        self.secrets = tuple(s for s in (self.client_secret, self.seed, token, doc.get("refresh_token"), previous)
                             if isinstance(s, str) and s)

    def _locked_out(self, why: str) -> AuthError:
        if self.remedy:  # no command gives it back: say what the operator does
            return AuthError(f"{self.channel}: {why}; {self.remedy}", code="reinstall", target=self.channel)
        return AuthError(f"{self.channel}: {why}; the seller must authorize the app again: run "
                         f"`{self.reauthorize}`", code="reauthorize", target=self.channel)

    def _refresh(self) -> None:
        """Renew, one process at a time (API.md L28: two refreshes with one token disconnect the seller)."""
        with self.state.exclusive("oauth-refresh"):
            stored = self._read()[1]  # another process may have refreshed while this one waited
            if stored.get("access_token") and not stored.get("locked") \
                    and stored.get("access_token") != self._doc.get("access_token") \
                    and self.wall() < stored.get("expires_at", 0) - self.margin:
                self._adopt(stored)
                return
            self._refresh_now()

    def _refresh_now(self) -> None:
        stored_text, doc = self._read()
        if doc.get("locked"):
            raise self._locked_out(str(doc["locked"]))
        used = doc.get("refresh_token")
        if not isinstance(used, str) or not used:
            raise self._locked_out("no refresh token is stored (the app was never authorized for this channel)")
        failpoints.hit("oauth.refresh.before_post")
        what = f"POST {self.token_path}"
        secrets = (*self.secrets, used)
        try:
            # never repeated: a refresh token works once, and a repeat after a lost answer would use a dead one
            resp = self.client.request("POST", self.token_path, authenticated=False, idempotent=False, data={
                "grant_type": "refresh_token", "client_id": self.client_id, "client_secret": self.client_secret,
                "refresh_token": used})
        except ChannelError as exc:
            exc.args = (redact(str(exc), secrets),)
            raise
        failpoints.hit("oauth.refresh.answered")
        code, text = oauth_error(resp)
        if resp.status == 400 and code == "invalid_grant":
            self._refused(doc, used, stored_text)
            return
        if resp.status in (400, 401, 403):
            raise AuthError(redact(f"{self.channel}: {what}: the app's credentials were refused: "
                                   f"{code or resp.status}: {text or 'no message'}", secrets),
                            status=resp.status, code=code, target=self.channel)
        if resp.status != 200:
            raise TransientError(f"{self.channel}: {what} answered {resp.status}", status=resp.status,
                                 code=code, target=self.channel)
        new = token_doc(_parse_tokens(self.channel, what, resp), now=self.wall(), previous=doc)
        self.state.put(STATE_KEY, json.dumps(new))  # durable before the new access token is used
        failpoints.hit("oauth.refresh.stored")
        self.refreshes += 1
        self._adopt(new)

    def _refused(self, doc: dict[str, Any], used: str, stored_text: str | None) -> None:
        """invalid_grant: a newer token stored meanwhile is used; none means the authorization is lost.

        The lock-out is stored only if nothing newer was stored since this refresh began (a process
        beside this one may be storing the token it just got): never over a live token.
        """
        why = (f"{self.platform} refused the stored refresh token (invalid_grant: already used or expired, e.g. by "
               "an earlier refresh whose answer was lost)")
        locked = json.dumps({**doc, "locked": why, "access_token": None})
        if not self.state.put_if(STATE_KEY, locked, stored_text):
            stored = load_doc(self.state)
            if stored.get("refresh_token") in (None, used) or stored.get("locked"):
                raise self._locked_out(str(stored.get("locked") or why))
            self._adopt(stored)  # a newer token: use it (refreshed first if it is due)
            if self._headers is None or self.wall() >= stored.get("expires_at", 0) - self.margin:
                self._refresh_now()
            return
        self._adopt({})
        raise self._locked_out(why)
