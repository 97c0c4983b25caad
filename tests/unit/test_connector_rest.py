"""The REST connector base: a channel declared by its auth, feeds and listings works without more code."""

from __future__ import annotations

import base64
from typing import Any, ClassVar

import pytest
import responses

from syncagent.connectors.base import Capabilities
from syncagent.connectors.rest import (
    AfterSeq,
    Basic,
    ClientCredentials,
    Feed,
    Keyset,
    RestConnector,
    StaticKey,
)
from syncagent.errors import AuthError, PermanentError
from syncagent.http import HttpSettings
from syncagent.model import BadRecord

URL = "http://shop.test"


def parse(item: dict[str, Any]) -> tuple[str, str]:
    return (item["id"], item["name"])


class Shop(RestConnector):
    """A whole channel in declarations (its mappers and writers left out)."""

    type_name = "shop"
    capabilities = Capabilities(pull=frozenset({"orders"}), listing=frozenset({"products"}))
    auth: ClassVar[Any] = Basic("user", "password")
    check_path = "/api/orders"
    feeds: ClassVar[Any] = {"orders": Feed("/api/orders", AfterSeq(), parse, "id")}
    lists: ClassVar[Any] = {"products": Feed("/api/{entity}", Keyset(), key="sku")}
    max_page = 2


def shop(**options: str) -> Shop:
    return Shop("loja", URL, {"user": "ana", "password": "s3nha-secreta", **options}, HttpSettings(max_attempts=1),
                sleep=lambda s: None)


@responses.activate
def test_a_seq_feed_pages_until_a_short_page_and_each_page_carries_its_cursor() -> None:
    responses.get(URL + "/api/orders", json={"items": [{"id": "a", "name": "A", "seq": 4},
                                                       {"id": "b", "name": 7, "seq": 5}]})
    responses.get(URL + "/api/orders", json={"items": [{"id": "c", "name": "C", "seq": 6}]})
    pages = list(shop().pull("orders", "3"))
    assert [p.cursor for p in pages] == ["5", "6"]
    assert pages[0].records[0] == ("a", "A") and isinstance(pages[1].records[0], tuple)
    first = responses.calls[0].request
    assert "after=3" in first.url and "limit=2" in first.url
    assert first.headers["Authorization"] == "Basic " + base64.b64encode(b"ana:s3nha-secreta").decode()
    with pytest.raises(PermanentError, match="orders cursor 'x' is not a seq number"):
        list(shop().pull("orders", "x"))
    with pytest.raises(ValueError, match="no prices feed"):
        list(shop().pull("prices", None))


@responses.activate
def test_an_item_that_cannot_be_parsed_is_a_bad_record_and_the_page_goes_on() -> None:
    responses.get(URL + "/api/orders", json={"items": [{"id": "a", "seq": 1}, {"id": "b", "name": "B", "seq": 2}]})
    responses.get(URL + "/api/orders", json={"items": []})
    (page, _) = list(shop().pull("orders", None))
    assert isinstance(page.records[0], BadRecord) and page.records[0].key == "a" and page.records[1] == ("b", "B")


@responses.activate
def test_a_listing_follows_its_keyset_and_stops_when_the_key_does_not_move() -> None:
    responses.get(URL + "/api/products", json={"items": [{"sku": "1"}, {"nope": 1}], "next_after_key": "1"})
    responses.get(URL + "/api/products", json={"items": [{"sku": "2", "barcode": "789"}], "next_after_key": "1"})
    pages = list(shop().listing("products"))
    assert [[i.key for i in p] for p in pages] == [["1"], ["2"]] and pages[1][0].barcode == "789"
    assert "after_key=1" in responses.calls[1].request.url


@responses.activate
def test_errors_are_mapped_alike_and_no_secret_leaks_into_them() -> None:
    encoded = base64.b64encode(b"ana:s3nha-secreta").decode()
    responses.get(URL + "/api/orders", status=401,
                  json={"error": {"code": "bad_credentials", "message": f"rejected s3nha-secreta {encoded}"}})
    conn = shop()
    with pytest.raises(AuthError) as caught:
        conn.check()
    assert "s3nha-secreta" not in str(caught.value) and encoded not in str(caught.value)
    assert conn.http_clients() == (conn.client,)


@responses.activate
def test_static_key_and_client_credentials_put_their_credentials_where_the_system_wants_them() -> None:
    class Keyed(Shop):
        auth: ClassVar[Any] = StaticKey("Authorization", "token", prefix="Token ")

    class OAuth(Shop):
        auth: ClassVar[Any] = ClientCredentials("client_id", "client_secret", token_path="/oauth/token")

    responses.get(URL + "/api/orders", json={"items": []})
    Keyed("loja", URL, {"token": "t0k3n-value"}, HttpSettings(max_attempts=1)).check()
    assert responses.calls[-1].request.headers["Authorization"] == "Token t0k3n-value"
    responses.post(URL + "/oauth/token", json={"access_token": "acc3ss", "expires_in": 600})
    OAuth("loja", URL, {"client_id": "id", "client_secret": "s3cret-value"}, HttpSettings(max_attempts=1)).check()
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer acc3ss"
    assert "client_secret=s3cret-value" in str(responses.calls[-2].request.body)
