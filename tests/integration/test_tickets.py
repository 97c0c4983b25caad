"""Customer service over real HTTP: Mercado Livre and SkyHub tickets into the back office, its answers back once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from syncagent.agent import Agent
from syncagent.authorize import authorize
from syncagent.config import load_config
from syncagent.journal import Journal
from tests.integration.harness import CANARY_ENV, CANARY_SECRET, Sim, assert_no_canary, start
from tests.integration.sac_harness import bo_token

ML_SECRET = "canary-ml-" + CANARY_SECRET[-10:]
SH_KEY, SH_MANAGER = "canary-sh-" + CANARY_SECRET[-10:], "canary-shm-" + CANARY_SECRET[-10:]
ML_CLIENT = "1234567890123456"

CONFIG = """\
journal: {tmp}/journal.db
log: {{level: warning}}
backoffice:
  type: gestao-lojas
  base_url: {bo}
  client_id: ${{GL_CLIENT_ID}}
  client_secret: ${{GL_CLIENT_SECRET}}
  http: {{max_attempts: 2, connect_timeout: 2, read_timeout: 10}}
defaults: {{every: 1m, http: {{max_attempts: 2, connect_timeout: 2, read_timeout: 10}}}}
channels:
  - name: ml
    type: mercadolivre
    base_url: {ml}
    client_id: "{ml_client}"
    client_secret: ${{ML_SECRET}}
    redirect_uri: https://loja.example/ml/callback
    claim_reply_path: /post-purchase/v1/claims/{{claim_id}}/messages
    rate_limit: {{per_second: 8, burst: 8}}
    flows: {{tickets: {{}}, ticket-answers: {{}}}}
  - name: americanas
    type: skyhub
    base_url: {sh}
    email: loja@example.com
    api_key: ${{SH_KEY}}
    account_manager_key: ${{SH_MANAGER}}
    reply_call: {reply_call}
    flows: {{tickets: {{}}, ticket-answers: {{}}}}
"""


@dataclass
class Sac:
    bo: Sim
    ml: Sim
    sh: Sim
    path: Path

    def run(self, flow: str, channel: str | None = None) -> list:  # type: ignore[type-arg]
        with Agent(load_config(self.path)) as agent:
            return agent.run_entity(flow, channel=channel)

    def tickets(self, channel: str | None = None) -> list[dict]:  # type: ignore[type-arg]
        items = self.bo.admin("GET", "/_admin/tickets")["items"]
        return [t for t in items if channel is None or t["channel"] == channel]

    def ticket(self, external_id: str) -> dict:  # type: ignore[type-arg]
        (found,) = [t for t in self.tickets() if t["external_id"] == external_id]
        return found

    def reply(self, external_id: str, body: str) -> None:
        self.bo.admin("POST", f"/_admin/tickets/{self.ticket(external_id)['id']}/reply", json={"body": body})


@contextmanager
def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reply_call: str = "chats",
         sim_reply: str = "chats") -> Iterator[Sac]:
    for key, value in {**CANARY_ENV, "ML_SECRET": ML_SECRET, "SH_KEY": SH_KEY, "SH_MANAGER": SH_MANAGER}.items():
        monkeypatch.setenv(key, value)
    bo = start("gestao-lojas", tmp_path / "bo.db")
    ml = start("mercadolivre", tmp_path / "ml.db", client_secret=ML_SECRET, client_id=ML_CLIENT, products=0)
    sh = start("skyhub", tmp_path / "sh.db", api_key=SH_KEY, account_manager_key=SH_MANAGER,
               email="loja@example.com", reply_call=sim_reply, products=0)
    path = tmp_path / "syncagent.yaml"
    path.write_text(CONFIG.format(tmp=tmp_path, bo=bo.url, ml=ml.url, sh=sh.url, ml_client=ML_CLIENT,
                                  reply_call=reply_call))
    config = load_config(path)  # what `syncagent auth mercadolivre --channel ml` does once
    with Journal(config.journal) as journal:
        authorize(config.channel("ml"), journal, ml.admin("POST", "/_admin/auth/code")["code"])
    try:
        yield Sac(bo, ml, sh, path)
    finally:
        for sim in (bo, ml, sh):
            sim.server.stop()


@pytest.fixture
def sac(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Iterator[Sac]:
    with make(tmp_path, monkeypatch) as made:
        yield made
    assert_no_canary(tmp_path, capfd)


def test_a_question_becomes_a_ticket_once_and_the_answer_reaches_it_once(sac: Sac) -> None:
    sac.ml.admin("POST", "/_admin/questions", json={"id": 111, "text": "Tem na cor azul?"})
    for _ in range(2):
        (result,) = sac.run("tickets", "ml")
        assert result.status == "ok", result.error
    (ticket,) = sac.tickets("ml")
    assert (ticket["external_id"], ticket["kind"], ticket["status"]) == ("question:111", "question", "waiting_seller")
    assert [m["body"] for m in ticket["messages"]] == ["Tem na cor azul?"]
    sac.reply("question:111", "Temos sim, pode comprar.")
    for _ in range(2):
        (result,) = sac.run("ticket-answers", "ml")
        assert result.status == "ok", result.error
    assert sac.ml.admin("GET", "/_admin/sent")["items"] == [
        {"kind": "question", "id": 111, "text": "Temos sim, pode comprar."}]
    sac.run("tickets", "ml")
    assert len(sac.tickets("ml")) == 1


def test_a_pack_reply_goes_to_the_conversations_addressee_and_new_messages_are_appended_once(sac: Sac) -> None:
    # an intermediated conversation (the 2026 change): the reply must go to the agent, not the buyer
    sac.ml.admin("POST", "/_admin/packs/2000000000777/messages", json={
        "buyer_id": 5550001, "agent_id": 9990001, "from_id": 9990001, "text": "Quando chega meu pedido?"})
    sac.run("tickets", "ml")
    sac.reply("message:2000000000777", "Sai hoje pela transportadora.")
    (result,) = sac.run("ticket-answers", "ml")
    assert result.status == "ok" and result.sent == 1, result.error
    sac.ml.admin("POST", "/_admin/packs/2000000000777/messages", json={"from_id": 9990001, "text": "Obrigado!"})
    sac.run("tickets", "ml")
    sac.run("tickets", "ml")
    ticket = sac.ticket("message:2000000000777")
    assert [m["body"] for m in ticket["messages"]] == ["Quando chega meu pedido?", "Obrigado!"]  # ours not echoed
    assert [s["text"] for s in sac.ml.admin("GET", "/_admin/sent")["items"]] == ["Sai hoje pela transportadora."]


def test_back_office_only_tickets_never_leave_and_a_banned_question_is_quarantined_with_mls_reason(sac: Sac) -> None:
    opened = sac.bo.admin("POST", "/_admin/tickets", json={"subject": "interno"})
    sac.bo.admin("POST", f"/_admin/tickets/{opened['id']}/reply", json={"body": "nota interna"})
    sac.ml.admin("POST", "/_admin/questions", json={"id": 222, "text": "Aceita troca?"})
    sac.ml.admin("POST", "/_admin/claims", json={"id": 5001, "message": "Veio quebrado"})
    sac.run("tickets", "ml")
    assert {t["external_id"] for t in sac.tickets("ml")} == {"question:222", "claim:5001"}
    sac.ml.admin("PATCH", "/_admin/questions/222", json={"status": "BANNED"})
    sac.reply("question:222", "Aceitamos.")
    sac.reply("claim:5001", "Vamos trocar o produto.")
    (result,) = sac.run("ticket-answers", "ml")
    assert result.status == "quarantined" and result.quarantined == 1 and result.sent == 1
    sent = sac.ml.admin("GET", "/_admin/sent")["items"]
    assert sent == [{"kind": "claim", "id": 5001, "text": "Vamos trocar o produto."}]  # nothing internal left
    with Agent(load_config(sac.path)) as agent:
        (row,) = agent.journal.quarantined("ml", "ticket-answers")
    assert row.reason_code == "banned_question" and "banned" in row.reason


def test_an_answer_to_a_ticket_the_agent_never_downloaded_from_the_channel_never_leaves(sac: Sac) -> None:
    # a ticket that claims to come from the channel but that this agent never brought in (typed by hand,
    # another integration): its answer is not sent, it is quarantined saying why
    ticket = {"channel": "ml", "external_id": "question:333", "kind": "question", "subject": "manual",
              "status": "open", "opened_at": "2026-12-01T10:00:00Z", "messages": []}
    resp = requests.post(sac.bo.url + "/tickets", json=ticket, headers=bo_token(sac.bo), timeout=10)
    assert resp.status_code == 201
    sac.reply("question:333", "Olá")
    (result,) = sac.run("ticket-answers", "ml")
    assert result.status == "quarantined"
    assert sac.ml.admin("GET", "/_admin/sent")["items"] == [] and sac.ml.writes() == []
    with Agent(load_config(sac.path)) as agent:
        (row,) = agent.journal.quarantined("ml", "ticket-answers")
    assert row.reason_code == "not_from_channel"


@pytest.mark.parametrize("reply_call", ["chats", "interactions"])
def test_skyhub_threads_and_instances_become_tickets_once_and_the_seller_answers_only_its_threads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reply_call: str) -> None:
    with make(tmp_path, monkeypatch, reply_call, reply_call) as sac:
        skyhub_threads(sac)


def skyhub_threads(sac: Sac) -> None:
    code = "Lojas Americanas-201000000004001"
    sac.sh.admin("POST", f"/_admin/sacs/{code}/messages", json={"parts": "CUSTOMER_SELLER", "role": "CUSTOMER",
                                                                "content": "Produto não chegou", "order_code": "A-1"})
    sac.sh.admin("POST", f"/_admin/sacs/{code}/messages", json={"parts": "CUSTOMER_B2W", "role": "CUSTOMER",
                                                                "content": "Quero cancelar"})
    sac.sh.admin("POST", f"/_admin/sacs/{code}/instances", json={"code": "77", "reason": "Atraso"})
    for _ in range(2):
        (result,) = sac.run("tickets", "americanas")
        assert result.status == "ok", result.error
    keys = {t["external_id"] for t in sac.tickets("americanas")}
    assert keys == {f"ticket:{code}#CUSTOMER_SELLER", f"ticket:{code}#CUSTOMER_B2W", f"ticket:{code}/77"}
    sac.reply(f"ticket:{code}#CUSTOMER_SELLER", "Reenviamos hoje.")
    sac.reply(f"ticket:{code}#CUSTOMER_B2W", "Não somos parte desta conversa.")
    for _ in range(2):
        sac.run("ticket-answers", "americanas")
    assert sac.sh.admin("GET", "/_admin/sac-replies")["items"] == [
        {"code": code, "parts": "CUSTOMER_SELLER", "content": "Reenviamos hoje."}]
    with Agent(load_config(sac.path)) as agent:
        (row,) = agent.journal.quarantined("americanas", "ticket-answers")
    assert row.reason_code == "not_a_party"
    sac.sh.admin("POST", f"/_admin/sacs/{code}/messages", json={"parts": "CUSTOMER_SELLER", "role": "CUSTOMER",
                                                                "content": "Obrigado"})
    sac.run("tickets", "americanas")
    bodies = [m["body"] for m in sac.ticket(f"ticket:{code}#CUSTOMER_SELLER")["messages"]]
    assert bodies == ["Produto não chegou", "Obrigado"]  # the channel's copy of our answer is not brought back


def test_with_the_reply_call_unset_a_skyhub_answer_waits_in_quarantine_saying_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with make(tmp_path, monkeypatch, "none", "chats") as sac:
        unset_reply_call(sac)


def unset_reply_call(sac: Sac) -> None:
    code = "Lojas Americanas-201000000004002"
    sac.sh.admin("POST", f"/_admin/sacs/{code}/messages", json={"parts": "CUSTOMER_SELLER", "content": "Oi"})
    sac.run("tickets", "americanas")
    sac.reply(f"ticket:{code}#CUSTOMER_SELLER", "Olá!")
    (result,) = sac.run("ticket-answers", "americanas")
    assert result.status == "quarantined"
    assert sac.sh.writes() == []
    with Agent(load_config(sac.path)) as agent:
        (row,) = agent.journal.quarantined("americanas", "ticket-answers")
    assert row.reason_code == "not_configured" and "reply_call" in row.reason
    sac.path.write_text(sac.path.read_text().replace("reply_call: none", "reply_call: chats"))
    with Agent(load_config(sac.path)) as agent:  # the operator confirmed the call: `quarantine retry`
        assert agent.engine.retry("americanas", "ticket-answers", row.key) == (True, "applied")
        assert agent.journal.quarantined("americanas", "ticket-answers") == []
    (result,) = sac.run("ticket-answers", "americanas")
    assert result.sent == 0
    assert [s["content"] for s in sac.sh.admin("GET", "/_admin/sac-replies")["items"]] == ["Olá!"]


def test_a_lost_answer_of_the_back_office_is_looked_up_and_the_ticket_is_not_created_twice(sac: Sac) -> None:
    sac.ml.admin("POST", "/_admin/questions", json={"id": 444, "text": "Entrega em Manaus?"})
    sac.bo.admin("POST", "/_admin/faults", json={"commit_then_fail": {"POST /tickets": 1.0}, "only": "POST /tickets"})
    (result,) = sac.run("tickets", "ml")
    faults = sac.bo.admin("GET", "/_admin/faults")
    sac.bo.admin("DELETE", "/_admin/faults")
    assert sum(faults["counts"].values()) >= 1, faults  # the answer really was lost
    assert result.status == "ok", result.error  # committed then lost: found by the lookup at once
    sac.run("tickets", "ml")
    assert [t["external_id"] for t in sac.tickets("ml")] == ["question:444"]


def test_answers_wait_behind_one_that_failed_and_then_go_in_order(sac: Sac) -> None:
    code = "Lojas Americanas-201000000004009"
    sac.sh.admin("POST", f"/_admin/sacs/{code}/messages", json={"parts": "CUSTOMER_SELLER", "content": "Oi"})
    sac.run("tickets", "americanas")
    sac.reply(f"ticket:{code}#CUSTOMER_SELLER", "Primeira resposta")
    sac.reply(f"ticket:{code}#CUSTOMER_SELLER", "Segunda resposta")
    sac.sh.admin("POST", "/_admin/faults", json={"fail_next": 5, "fail_status": 503, "only": "POST /sac"})
    with Agent(load_config(sac.path), sleep=lambda s: None) as agent:
        (failed,) = agent.run_entity("ticket-answers", channel="americanas")
    assert failed.status == "failed" and sac.sh.admin("GET", "/_admin/sac-replies")["items"] == []
    sac.sh.admin("DELETE", "/_admin/faults")
    (result,) = sac.run("ticket-answers", "americanas")
    assert result.status == "ok" and result.sent == 2, result.error
    sent = [s["content"] for s in sac.sh.admin("GET", "/_admin/sac-replies")["items"]]
    assert sent == ["Primeira resposta", "Segunda resposta"]
