"""Which channel types publish no customer-service (ticket) API, and why: said by the config check and doctor.

From ../shared/contracts/sac/API.md (summary table and the sections per channel). Keyed by
connector type, so a channel type that has no connector module yet is covered too. A `tickets`
or `ticket-answers` flow configured on one of these is a config error quoting the reason.
"""

from __future__ import annotations

NO_TICKET_API: dict[str, str] = {
    "vtex": "VTEX has no ticket or SAC object; the nearest thing is the order's e-mail log (conversation-message), "
            "read-only, with no status and no reply call, so there is nothing to answer through",
    "via": "Via / Casas Bahia publishes no SAC or ticket endpoint (its support portal lists no SAC API category; "
           "its 'protocolos' are answered in the Portal do Lojista); ask Via for the protocol API before expecting "
           "tickets here",
    "netshoes": "Netshoes / Zattini publishes no SAC or questions resource in its API v2",
    "walmart": "Walmart's marketplace API has no buyer-seller messaging scope (returns only), and a Brazilian "
               "Walmart marketplace is not confirmed",
}
SAC_FLOWS = ("tickets", "ticket-answers")


def no_ticket_api(type_name: str) -> str | None:
    """Why a channel of this type offers no tickets flow, or None when that is not known to be so."""
    return NO_TICKET_API.get(type_name)
