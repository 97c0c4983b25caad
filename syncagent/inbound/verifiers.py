"""How each platform's notifications are told from forgeries, keyed by connector type.

A connector module may implement `verify_notification` itself; a type whose module does not is
checked here (`BaseConnector.verify_notification` looks it up), so a check can be written before,
or without touching, the connector's own module. Every check fails closed: without the secret or
id it needs in the channel's `notifications:` config, it refuses. Each returns the `Notification`
(the flow whose step it wakes) or None (401).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from syncagent.connectors.base import InboundRequest, Notification

if TYPE_CHECKING:
    from syncagent.config import NotificationSettings

TOKEN_HEADER = "x-syncagent-token"  # where a shared token is looked for when the config names no header
TOKEN_PARAM = "token"  # ... or this query parameter of the URL registered with the platform

Verifier = Callable[[InboundRequest, "NotificationSettings"], Notification | None]


def same(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; nothing expected (not configured) never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def shared_token(request: InboundRequest, settings: NotificationSettings) -> bool:
    """The channel's shared secret, sent in its header (`notifications.header`, else X-Syncagent-Token) or
    in the `token` query parameter of the URL registered with the platform."""
    header = (settings.header or TOKEN_HEADER).lower()
    return same(request.headers.get(header), settings.secret) or \
        same(request.query.get(TOKEN_PARAM), settings.secret)


def body_json(request: InboundRequest) -> dict[str, Any] | None:
    """The body as a JSON object, or None (not JSON, not an object)."""
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, str)):
        text = str(value).strip()
        return text[:100] or None
    return None


# -- Jumpseller: HMAC-SHA256 of the raw body with the store's hooks token, base64, in Jumpseller-Hmac-Sha256
# (contracts/jumpseller/SOURCE.md L30-31; the token is the Store's `hooks_token`, openapi.json Store schema)
JUMPSELLER_SIGNATURE = "jumpseller-hmac-sha256"
JUMPSELLER_EVENT = "jumpseller-event"


def jumpseller(request: InboundRequest, settings: NotificationSettings) -> Notification | None:
    if not settings.secret:
        return None
    digest = hmac.new(settings.secret.encode(), request.body, hashlib.sha256).digest()
    if not same(request.headers.get(JUMPSELLER_SIGNATURE), base64.b64encode(digest).decode()):
        return None
    event = request.headers.get(JUMPSELLER_EVENT, "")
    data = body_json(request) or {}
    order = data.get("order") if isinstance(data.get("order"), dict) else data
    flow = "products" if event.startswith("product") else "orders"
    return Notification(flow, event, _text(order.get("id")) if isinstance(order, dict) else None)


# -- Mercado Livre: a pointer {resource, user_id, topic, application_id, ...}; no signature, so the
# application id (and the seller) must be ours and the topic one we subscribe to (mercadolivre/API.md L80-87)
ML_TOPICS = {"orders_v2": "orders", "orders": "orders"}


def mercadolivre(request: InboundRequest, settings: NotificationSettings) -> Notification | None:
    data = body_json(request)
    if data is None or not same(_text(data.get("application_id")), settings.application_id):
        return None
    if settings.user_id and not same(_text(data.get("user_id")), settings.user_id):
        return None
    topic = _text(data.get("topic")) or ""
    resource = _text(data.get("resource")) or ""
    if topic not in ML_TOPICS:
        return Notification("", topic)  # ours, but about nothing a step of ours reads: answered, not stored
    return Notification(ML_TOPICS[topic], topic, resource.rsplit("/", 1)[-1] or None)


# -- Plugg.to: {type, id, action, user, changes} POSTed to the URL registered for the app (pluggto/API.md
# L98-104); how Plugg.to signs it is not documented: the URL carries a shared token (`?token=`)
PLUGGTO_TYPES = {"orders": "orders"}


def pluggto(request: InboundRequest, settings: NotificationSettings) -> Notification | None:
    if not shared_token(request, settings):
        return None
    data = body_json(request) or {}
    kind = _text(data.get("type")) or ""
    return Notification(PLUGGTO_TYPES.get(kind, ""), kind, _text(data.get("id")))


# -- Via: the seller registers a callback URL; its body and any signature are not documented
# (via/API.md has no callback section): the URL carries a shared token, any call wakes the orders step
def via(request: InboundRequest, settings: NotificationSettings) -> Notification | None:
    if not shared_token(request, settings):
        return None
    data = body_json(request) or {}
    key = next((_text(data.get(k)) for k in ("orderId", "order_id", "id") if _text(data.get(k))), None)
    return Notification("orders", _text(data.get("type")) or "callback", key)


# -- VTEX: the orders hook POSTs {Domain, OrderId, State, LastState, ...} with the headers given in its
# configuration (`POST /api/orders/hook/config`, hook.headers: Orders API HookConfigurationRequest): one
# of them carries the shared token; the ping sent when the hook is configured wakes nothing
def vtex(request: InboundRequest, settings: NotificationSettings) -> Notification | None:
    if not shared_token(request, settings):
        return None
    data = body_json(request) or {}
    if data.get("hookConfig") == "ping":
        return Notification("", "ping")
    return Notification("orders", _text(data.get("State")) or "", _text(data.get("OrderId")))


# -- Seller Up: its API (contracts/sellerup/openapi.yaml) documents no notifications; the tablet app's
# sender used here posts {topic, id} with the shared token in X-Syncagent-Token
def sellerup(request: InboundRequest, settings: NotificationSettings) -> Notification | None:
    if not shared_token(request, settings):
        return None
    data = body_json(request) or {}
    topic = _text(data.get("topic")) or "orders"
    return Notification("orders" if topic.startswith("order") else "", topic, _text(data.get("id")))


# -- Netshoes: a notification URL set on the portal fires on every order status change; its payload and
# signing are UNKNOWN (netshoes/API.md L99-103): the URL carries a shared token, any call wakes the orders step
def netshoes(request: InboundRequest, settings: NotificationSettings) -> Notification | None:
    if not shared_token(request, settings):
        return None
    data = body_json(request) or {}
    key = next((_text(data.get(k)) for k in ("orderNumber", "number", "id") if _text(data.get(k))), None)
    return Notification("orders", _text(data.get("type")) or "status", key)


VERIFIERS: Mapping[str, Verifier] = {
    "netshoes": netshoes,
    "vtex": vtex,
    "sellerup": sellerup,
    "jumpseller": jumpseller,
    "mercadolivre": mercadolivre,
    "mercado-livre": mercadolivre,
    "pluggto": pluggto,
    "via": via,
}
