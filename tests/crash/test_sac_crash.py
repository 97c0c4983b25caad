"""Crashes around the tickets and deliveries flows: no duplicate ticket, message, answer or delivery status.

A small scenario (Mercado Livre questions, a post-sale pack, a claim; a Correios parcel posted, in
transit and delivered): the agent is killed at each dangerous instant of the two flows in turn,
then run clean until it converges, and the back office and the channel are checked.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from syncagent import failpoints
from syncagent.authorize import authorize
from syncagent.config import load_config
from syncagent.journal import Journal
from syncagent.simulators import build
from syncagent.simulators.common import serve_in_thread
from tests.crash.harness import SETTLE, run_agent
from tests.integration.harness import CANARY_SECRET, Sim
from tests.integration.sac_harness import CORREIOS_CODE, place_order, s10, ship

ML_SECRET = "crash-ml-" + CANARY_SECRET[-8:]
CODE = s10(24681357)
CONFIG = """\
journal: {tmp}/journal.db
log: {{level: error}}
backoffice:
  type: gestao-lojas
  base_url: {bo}
  client_id: syncagent-demo
  client_secret: ${{GL_CLIENT_SECRET}}
  http: {{max_attempts: 3, connect_timeout: 0.2, read_timeout: 0.5}}
defaults: {{every: 1m, http: {{max_attempts: 3, connect_timeout: 0.2, read_timeout: 0.5}}}}
channels:
  - name: ml
    type: mercadolivre
    base_url: {ml}
    client_id: "1234567890123456"
    client_secret: ${{ML_SECRET}}
    redirect_uri: https://loja.example/ml/callback
    flows: {{tickets: {{}}, ticket-answers: {{}}, deliveries: {{}}}}
carriers:
  - name: correios
    type: correios
    base_url: {correios}
    names: [Correios]
    user: syncagent-demo
    access_code: ${{CORREIOS_CODE}}
"""


def scenario(tmp: Path) -> tuple[Sim, Sim, Sim, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    bo = Sim(serve_in_thread(build("gestao-lojas", str(tmp / "bo.db"), products=20, seed=7,
                                   client_secret=CANARY_SECRET)))
    ml = Sim(serve_in_thread(build("mercadolivre", str(tmp / "ml.db"), products=0, client_secret=ML_SECRET,
                                   client_id="1234567890123456")))
    correios = Sim(serve_in_thread(build("correios", str(tmp / "co.db"), access_code=CORREIOS_CODE)))
    for qid in (1, 2):
        ml.admin("POST", "/_admin/questions", json={"id": qid, "text": f"Pergunta {qid}?"})
    ml.admin("POST", "/_admin/packs/900/messages", json={"buyer_id": 5550001, "text": "Oi, e meu pedido?"})
    ml.admin("POST", "/_admin/claims", json={"id": 77, "message": "Chegou errado"})
    number = place_order(bo, "ml", "900")
    ship(bo, number, "Correios", CODE)
    for event in ("PO", "RO", "BDE"):
        correios.admin("POST", f"/_admin/objects/{CODE}/events", json={"codigo": event, "tipo": "01"})
    config = tmp / "syncagent.yaml"
    config.write_text(CONFIG.format(tmp=tmp, bo=bo.url, ml=ml.url, correios=correios.url))
    with pytest.MonkeyPatch.context() as env:  # what `syncagent auth mercadolivre --channel ml` does once
        env.setenv("ML_SECRET", ML_SECRET)
        env.setenv("GL_CLIENT_SECRET", CANARY_SECRET)
        env.setenv("CORREIOS_CODE", CORREIOS_CODE)
        loaded = load_config(config)
        with Journal(loaded.journal) as journal:
            authorize(loaded.channel("ml"), journal, ml.admin("POST", "/_admin/auth/code")["code"])
    return bo, ml, correios, config


def converge(config: Path, env: dict[str, str]) -> None:
    for _ in range(4):
        if run_agent(config, env=env) == 0:
            return
        time.sleep(SETTLE)  # a ticket left `creating` is posted again only once its POST is this old
    raise AssertionError("no convergence within 4 clean runs")


POINTS = ["ticket.before_create:1", "ticket.after_create:1", "ticket.after_create:3", "ticket.after_message:1",
          "delivery.before_write:2", "delivery.after_write:1", "answer.after_send:1", "answer.before_send:1",
          "journal.before_commit:3", "journal.after_commit:5"]


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_leaves_no_duplicate(point: str, workroot: Path) -> None:
    env = {"CORREIOS_CODE": CORREIOS_CODE, "ML_SECRET": ML_SECRET}
    bo, ml, correios, config = scenario(workroot / point.replace(":", "-"))
    try:
        if point.startswith("answer."):
            converge(config, env)
            for ticket in bo.admin("GET", "/_admin/tickets")["items"]:
                bo.admin("POST", f"/_admin/tickets/{ticket['id']}/reply", json={"body": f"Resposta {ticket['id']}"})
        if point == "ticket.after_message:1":
            converge(config, env)
            ml.admin("POST", "/_admin/packs/900/messages", json={"text": "Alguém?"})
        code = run_agent(config, f"crash:{point}", env=env)
        assert code in (failpoints.CRASH_EXIT_CODE, 0, 1)
        converge(config, env)
        tickets = bo.admin("GET", "/_admin/tickets")["items"]
        keys = Counter(t["external_id"] for t in tickets)
        assert keys == Counter({"question:1": 1, "question:2": 1, "message:900": 1, "claim:77": 1}), keys
        for ticket in tickets:
            ids = [m["external_id"] for m in ticket["messages"]]
            assert len(ids) == len(set(ids)), ticket
        statuses = [(d["tracking_code"], d["status"], d["occurred_at"]) for d in bo.admin("GET", "/_admin/deliveries")
                    ["items"]]
        assert len(statuses) == len(set(statuses)) == 3
        sent = Counter((s["kind"], s["id"]) for s in ml.admin("GET", "/_admin/sent")["items"])
        assert all(n == 1 for n in sent.values()), sent  # an answer never twice
        if point.startswith("answer."):
            assert set(sent) >= {("question", 1), ("question", 2), ("message", "900")}
    finally:
        for sim in (bo, ml, correios):
            sim.server.stop()
