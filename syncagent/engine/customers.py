"""Customers registered on a channel: bound to a back office customer by CPF/CNPJ, never duplicated."""

from __future__ import annotations

from dataclasses import replace

from syncagent import failpoints
from syncagent.engine.core import CursorTrail, EngineCore, _bad_key, _Ctx, _describe, _src
from syncagent.errors import MappingError
from syncagent.model import BadRecord, ChannelCustomer, Customer, Order, is_document, normalize_document


class Customers(EngineCore):
    """Pull the channel's customers and bind each to a back office code (found, else created once)."""

    def _pull_customers(self, ctx: _Ctx, *, may_stop: bool = False) -> None:
        """Bind the channel's customers; as a step of its own (`may_stop`) it yields after a recorded page."""
        if ctx.plan_only:
            return  # binding may create back office customers: a shadow channel writes nothing
        cursor = self.journal.cursor(ctx.name, "customers-pull")
        trail = CursorTrail(f"{ctx.name}/customers pull", cursor)
        for page in trail.follow(ctx.conn.pull("channel-customers", cursor)):
            for record in page.records:
                ctx.result.read += 1
                if isinstance(record, BadRecord):
                    self._quarantine(ctx, "channel-customers", _bad_key(record), record.code, record.reason,
                                     _src(record.raw))
                    continue
                self._bind_customer(ctx, record)
            with self.journal.transaction():
                self._advance(ctx.name, "customers-pull", page.cursor)
            if may_stop and self.should_stop():
                return

    def _bind_customer(self, ctx: _Ctx, cc: ChannelCustomer) -> str | None:
        """Bind a channel customer to a back office code: found by CPF/CNPJ, else created once."""
        code = self.journal.binding(ctx.name, "customers", cc.remote_id)
        if code is None:
            code = cc.linked_code
            if code is None:
                cc = replace(cc, document=normalize_document(cc.document))  # as typed: 436.555.472-77
                if not is_document(cc.document):  # whatever the connector let through: never bound, never created
                    self._quarantine(ctx, "channel-customers", cc.remote_id, "invalid_document",
                                     f"document {cc.document[:20]!r} is not a valid CPF/CNPJ", _src(_describe(cc)))
                    return None
                found = self.backoffice.lookup("customers", document=cc.document)
                if found is not None:
                    code = found.code
                else:
                    customer = Customer(document=cc.document, name=cc.name, email=cc.email, phone=cc.phone,
                                        address=cc.address)
                    try:
                        out = self.backoffice.prepare("customers", customer)
                    except MappingError as exc:
                        self._quarantine(ctx, "channel-customers", cc.remote_id, exc.code, exc.reason,
                                         _src(_describe(cc)))
                        return None
                    failpoints.hit("customer.before_create")
                    (res,) = self.backoffice.push("customers", [out])
                    failpoints.hit("customer.after_create")
                    if not res.ok or res.remote_id is None:
                        self._quarantine(ctx, "channel-customers", cc.remote_id, res.reason_code or "rejected",
                                         res.reason or "rejected by the back office", _src(_describe(cc)))
                        return None
                    code = res.remote_id
                    ctx.result.sent += 1
            with self.journal.transaction():
                self.journal.bind(ctx.name, "customers", cc.remote_id, code)
                self.journal.release(ctx.name, "channel-customers", [cc.remote_id])
        elif self.journal.has_open_quarantine(ctx.name, "channel-customers"):  # bound before it went bad
            with self.journal.transaction():
                self.journal.release(ctx.name, "channel-customers", [cc.remote_id], why="resolved: valid again")
        if cc.linked_code != code and not ctx.setup.shadow:
            link = ctx.conn.prepare("customer-links", {"remote_id": cc.remote_id, "code": code})
            (res,) = ctx.conn.push("customer-links", [link])
            if not res.ok:
                self._quarantine(ctx, "channel-customers", cc.remote_id, res.reason_code or "rejected",
                                 res.reason or "link refused", _src(_describe(cc)))
        return code

    def _customer_of(self, ctx: _Ctx, order: Order) -> str | None:
        """The back office code of the order's customer; pulls the channel's customers once if needed."""
        if order.customer_code is not None:
            return order.customer_code
        if not order.channel_customer_id:
            return None
        code = self.journal.binding(ctx.name, "customers", order.channel_customer_id)
        if code is None and not ctx.customers_pulled:
            self._pull_customers(ctx)  # a failure here parks the order: no quarantine for a passing fault
            ctx.customers_pulled = True
            code = self.journal.binding(ctx.name, "customers", order.channel_customer_id)
        return code
