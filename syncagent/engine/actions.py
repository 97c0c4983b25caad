"""Operator actions: retry a quarantined record, replay one object by key; and the self-releasing quarantine."""

from __future__ import annotations

from syncagent import entities
from syncagent.connectors.base import Outgoing, PushResult
from syncagent.engine.core import EngineCore, StepResult, _Ctx, _out, _stamp, log
from syncagent.engine.order_states import OrderState as S
from syncagent.errors import ChannelError, TransientError
from syncagent.journal import QuarantineRow, missing_references
from syncagent.mapping import SKU_ENTITIES, record_from_json
from syncagent.model import (
    EVENT_ORDER,
    Order,
    Product,
    channel_customer_from_dict,
    fingerprint,
    order_from_dict,
)

RELEASE_EVERY = 600.0  # a quarantined order whose missing reference cannot be checked is retried this often
RELEASE_BATCH = 50  # quarantined orders looked at per orders step for a reference that appeared
# what the back office may come to know later (an order naming one of these waits for it)
# a kind the engine cannot check itself ("register": a closed POS register, "tax rate": one set in the config
# or at the source) is retried every RELEASE_EVERY seconds until it goes
WAITING_KINDS = frozenset({"product", "payment method", "customer", "seller", "group", "store", "warehouse",
                           "register", "tax rate"})


class OperatorActions(EngineCore):
    """`quarantine retry`, `replay order|product`, and the orders that leave quarantine on their own."""

    def retry(self, channel: str, entity: str, key: str, ctx: _Ctx | None = None) -> tuple[bool, str]:
        """Re-apply one quarantined record now. Returns (applied, what happened)."""
        row = next(iter(self.journal.quarantined(channel, entity, key=key)), None)
        if row is None:
            return False, "not in quarantine"
        ctx = ctx or _Ctx(self.channels[channel], StepResult(channel, f"retry:{entity}"))
        if entity in entities.CATALOGUE or entity in ("channel-customers", "order-events"):
            # the stored copy may be stale: the source feed is read on from its saved cursor first, so a
            # record changed at its source goes as it is now; the stored copy is retried only if it is current
            self._read_source_on(ctx, entity)
            after = next(iter(self.journal.quarantined(channel, entity, key=key)), None)
            if after is None:
                return True, "applied (as it is now at its source)"
            if (after.last_seen, after.attempts) != (row.last_seen, row.attempts):
                return False, f"still refused as it is now at its source: {after.reason_code}: {after.reason}"
            row = after
        reopening, ctx.operator = ctx.operator, True
        try:
            return self._retry(ctx, channel, entity, key, row)
        finally:
            ctx.operator = reopening

    def _read_source_on(self, ctx: _Ctx, entity: str) -> None:
        """Read the feed a quarantined record came from on from its saved cursor (what a step would do)."""
        if entity in entities.CATALOGUE:
            self._dispatch(ctx, entity, False, "push" if entity == "customers" else None)
        elif entity == "order-events":
            self._order_events(ctx)
        else:
            self._pull_customers(ctx)

    def _retry(self, ctx: _Ctx, channel: str, entity: str, key: str, row: QuarantineRow) -> tuple[bool, str]:
        payload = row.payload if isinstance(row.payload, dict) else {}
        from_source = entity == "orders" and isinstance(payload.get("source"), dict)
        if entity in SKU_ENTITIES and (record := record_from_json(payload.get("source"))) is not None:
            self._push_records(ctx, entity, [record], None, None)
        elif "outgoing" in payload and not from_source:
            out = Outgoing(key, payload["outgoing"], payload.get("meta") or {})
            self._resend(ctx, entity, out, row.source_fingerprint)
        elif "source" in payload and isinstance(payload["source"], dict) and entity in ("orders", "channel-customers"):
            source = payload["source"]
            try:
                if entity == "orders":
                    order = order_from_dict(source)
                    with self.journal.transaction():
                        self._set_order(ctx, key, S.SEEN)
                    self._import_order(ctx, order)
                else:
                    self._bind_customer(ctx, channel_customer_from_dict(source))
            except (KeyError, TypeError, ValueError, ArithmeticError):
                return False, "the quarantined copy cannot be rebuilt; fix the record at its source or drop it"
        else:
            return False, ("the record is malformed at its source: fix it there (it is retried automatically"
                           " once it changes) or drop it")
        still = next(iter(self.journal.quarantined(channel, entity, key=key)), None)
        if still is None:
            return True, "applied"
        return False, f"still refused: {still.reason_code}: {still.reason}"

    def _release_waiting_orders(self, ctx: _Ctx) -> None:
        """Retry quarantined orders whose missing product, payment method or customer now exists.

        The back office names what it did not know ("unknown product 'X'"); each such reference
        is checked (a product by GET, a payment method in its small table, a SKU in the DE/PARA
        map, a customer by its binding). One that cannot be checked is retried every
        RELEASE_EVERY seconds. A lookup failure leaves the order where it is.
        """
        rows = [r for r in self.journal.quarantined(ctx.name, "orders") if _waits_for_reference(r)]
        cache: dict[tuple[str, str], bool | None] = {}
        now = self.wall()
        for row in rows[:RELEASE_BATCH]:
            ready = self._references_ready(ctx, row, cache)
            if ready is False or (ready is None and now - _stamp(row.last_seen) < RELEASE_EVERY):
                continue
            log.info("%s/orders: %s: retrying, %s", ctx.name, row.key,
                     "its missing reference now exists" if ready else "its reference cannot be checked")
            before = ctx.result.quarantined
            self._guarded(ctx, None, lambda row=row: self.retry(ctx.name, "orders", row.key, ctx))
            if ctx.result.quarantined == before and not self.journal.quarantined(ctx.name, "orders", row_id=row.id):
                ctx.result.details["released"] = ctx.result.details.get("released", 0) + 1

    def _references_ready(self, ctx: _Ctx, row: QuarantineRow, cache: dict[tuple[str, str], bool | None]) -> bool | None:
        """True when every reference the order lacked exists now, False if one still does not, None if unknown."""
        payload = row.payload if isinstance(row.payload, dict) else {}
        source = payload.get("source") if isinstance(payload.get("source"), dict) else {}
        if row.reason_code == "missing_reference":  # the engine's own: the order's customer is not known
            customer = source.get("channel_customer_id") if isinstance(source, dict) else None
            if isinstance(customer, str) and self.journal.binding(ctx.name, "customers", customer):
                return True
            return None
        answer: bool | None = True
        for kind, key in _back_office_references(row):
            if (kind, key) not in cache:
                cache[(kind, key)] = self._reference_exists(ctx, kind, key)
            found = cache[(kind, key)]
            if found is False:
                return False
            if found is None:
                answer = None
        return answer

    def _reference_exists(self, ctx: _Ctx, kind: str, key: str) -> bool | None:
        try:
            if kind == "product":
                if self.journal.backoffice_codes(ctx.name, [key]):
                    return True  # a channel SKU now mapped to a back office code
                return self.backoffice.lookup("products", code=key) is not None
            if kind == "payment method":
                return self.backoffice.lookup("payment-methods", code=key) is not None
        except ChannelError as exc:
            log.info("%s/orders: cannot check %s %r now: %s", ctx.name, kind, key, exc)
            return False
        return None

    def replay_order(self, channel: str, order_id: str) -> str:
        """Re-apply one channel order: found in the back office → recorded and acknowledged; else created once.

        The order comes from what the journal kept of it (its quarantined or parked copy, or the
        payload of its last creation attempt), else from the channel's feed read from the start.
        """
        ctx = _Ctx(self.channels[channel], StepResult(channel, "replay:orders"), operator=True)
        if ctx.setup.shadow:
            raise ChannelError(f"{channel} is a shadow channel: it sends nothing, so there is nothing to replay")
        row = self.journal.order(channel, order_id)
        found = self.backoffice.lookup("orders", external_id=order_id, channel=channel)
        if found is None and row is not None and row.state == S.CREATING \
                and self.wall() - _stamp(row.updated_at) < ctx.setup.settle_seconds:
            raise TransientError(f"order {order_id}: not in the back office yet, and a creation attempt may still be "
                                 f"running there; try again in {ctx.setup.settle_seconds:.0f} s")
        if found is not None:
            number = str(found["number"])
            with self.journal.transaction():
                self._set_order(ctx, order_id, S.CREATED, bo_number=number)
                self.journal.release(channel, "orders", [order_id])
            self._acknowledge(ctx, order_id, number)
            return f"already in the back office as {number}; the channel was told (acknowledged)"
        kept = next(iter(self.journal.quarantined(channel, "orders", key=order_id)), None)
        kept_source = kept.payload.get("source") if kept is not None and isinstance(kept.payload, dict) else None
        parked = (row.payload or {}).get("source") if row is not None else None
        source = kept_source if isinstance(kept_source, dict) else parked if isinstance(parked, dict) else None
        if source is not None:
            with self.journal.transaction():
                self._set_order(ctx, order_id, S.SEEN)
            self._import_order(ctx, order_from_dict(source))
        elif row is not None and row.payload and "source" not in row.payload:
            with self.journal.transaction():
                self._set_order(ctx, order_id, S.CREATING)
            self._create_in_backoffice(ctx, order_id, row.payload)
        else:
            order = self._find_in_feed(ctx, order_id)
            if order is None:
                raise ChannelError(f"order {order_id} is neither in the journal nor in {channel}'s order feed")
            with self.journal.transaction():
                self._set_order(ctx, order_id, S.SEEN, version=order.version)
            self._process_order(ctx, order)
        after = self.journal.order(channel, order_id)
        state = after.state if after is not None else "not imported"
        number = f" as {after.bo_number}" if after is not None and after.bo_number else ""
        why = f" ({after.reason_code}: {after.reason})" if after is not None and after.reason else ""
        return f"{state}{number}{why}"

    def _find_in_feed(self, ctx: _Ctx, order_id: str) -> Order | None:
        for page in ctx.conn.pull("orders", None):
            for record in page.records:
                if isinstance(record, Order) and record.remote_id == order_id:
                    return record
        return None

    def replay_product(self, channel: str, product: Product) -> str:
        """Send one product to one channel now, whatever the journal says was sent (under its DE/PARA SKU)."""
        ctx = _Ctx(self.channels[channel], StepResult(channel, "replay:products"), operator=True)
        work = self._map_page(ctx, "products", [product])
        if ctx.setup.shadow:
            return "shadow channel: nothing sent"
        work.changed = [(out, fp) for _, out, fp in work.prepared.values()]  # sent even if unchanged
        self._record_page(ctx, "products", self._send_page(ctx, "products", work), None, None)
        if work.bad or work.rejected:
            _, code, reason, _, _ = (work.bad + work.rejected)[0]
            return f"{'quarantined' if work.bad else 'refused'}: {code}: {reason}"
        (_, out, _), = work.prepared.values()
        return "sent" + (f" as {out.key}" if out.key != product.code else "")

    def _resend(self, ctx: _Ctx, entity: str, out: Outgoing, source_fp: str | None) -> None:
        if entity == "orders":
            with self.journal.transaction():
                self._set_order(ctx, out.key, S.CREATING, payload=out.payload)
            self._create_in_backoffice(ctx, out.key, out.payload)
        elif entity == "order-acks":
            self._acknowledge(ctx, out.key, str(out.payload.get("backoffice_number", "")))
        elif entity == "order-events":
            type_ = str(out.payload.get("type"))
            self._send_event(ctx, out.key, str(out.meta.get("order_id", "")), type_, EVENT_ORDER.get(type_, 0), out)
        elif entity == "order-cancels":
            (res,) = self.backoffice.push(entity, [out])
            self._record_resend(ctx, entity, out, res, source_fp, record=False)
        else:
            (res,) = ctx.conn.push(entity, [out])
            self._record_resend(ctx, entity, out, res, source_fp, record=True)

    def _record_resend(self, ctx: _Ctx, entity: str, out: Outgoing, res: PushResult, source_fp: str | None,
                *, record: bool) -> None:
        with self.journal.transaction():
            if res.ok:
                if record:
                    self.journal.record_sent(ctx.name, entity, [(out.key, fingerprint(out.payload), res.remote_id)])
                self.journal.release(ctx.name, entity, [out.key])
            else:
                self.journal.quarantine(ctx.name, entity, out.key, res.reason_code or "rejected",
                                        res.reason or "rejected", _out(out), source_fp)


def _back_office_references(row: QuarantineRow) -> list[tuple[str, str]]:
    """The things the back office said it did not know ("unknown product 'X'"), of the kinds that may appear."""
    return [(kind, key) for kind, key in missing_references(row.reason_code, row.reason, row.waiting_for)
            if kind in WAITING_KINDS]


def _waits_for_reference(row: QuarantineRow) -> bool:
    """A quarantined order refused for something that may exist later (not for a bad record)."""
    return row.reason_code == "missing_reference" or bool(_back_office_references(row))
