"""Portuguese tax rules an invoice needs: the NIF and its check digit, VAT rates, the OSS rate table.

Kept apart from the connector so the simulator validates a NIF with the very same rule, and so
the rate table (which changes by law, not by API) sits in one place the config can override.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

FINAL_CONSUMER_NIF = "999999990"  # API.md L63: never sent; an order without a NIF omits the client
# the first digits a NIF may start with (singular persons 1-3, companies 5, public bodies 6, 8 sole traders,
# 9 irregular and non-resident; 45 and 7x are also in use): anything else is a typing mistake
_NIF_FIRST = ("1", "2", "3", "5", "6", "8", "9", "45", "70", "71", "72", "74", "75", "77", "79")
_TYPED = " .-/\u00a0"

# mainland Portugal: the rate in percent → Vendus's tax code (API.md L104 `tax_id` NOR/INT/RED/ISE)
PT_TAX_IDS: dict[Decimal, str] = {Decimal("23"): "NOR", Decimal("13"): "INT", Decimal("6"): "RED",
                                  Decimal("0"): "ISE"}

# standard VAT rates of the EU member states (percent), for OSS distance sales to consumers; a rate
# that changes by law is overridden in the config (`oss_rates`) until this table is updated
EU_STANDARD_RATES: dict[str, Decimal] = {k: Decimal(v) for k, v in {
    "AT": "20", "BE": "21", "BG": "20", "CY": "19", "CZ": "21", "DE": "19", "DK": "25", "EE": "24", "ES": "21",
    "FI": "25.5", "FR": "20", "GR": "24", "HR": "25", "HU": "27", "IE": "23", "IT": "22", "LT": "21", "LU": "17",
    "LV": "21", "MT": "18", "NL": "21", "PL": "23", "PT": "23", "RO": "21", "SE": "25", "SI": "22", "SK": "23",
}.items()}


def normalise_nif(text: str) -> str:
    """A NIF as people type it (`PT 123 456 789`, `123.456.789`) reduced to its digits; letters stay."""
    cleaned = "".join(ch for ch in text.strip() if ch not in _TYPED).upper()
    return cleaned[2:] if cleaned.startswith("PT") else cleaned


def valid_nif(digits: str) -> bool:
    """Nine ASCII digits, a known first digit, and the modulo-11 check digit."""
    if len(digits) != 9 or not (digits.isascii() and digits.isdigit()) or not digits.startswith(_NIF_FIRST):
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))
    check = 11 - total % 11
    return (0 if check >= 10 else check) == int(digits[8])


def parse_rates(table: Mapping[str, object] | None) -> dict[str, Decimal]:
    """The config's `oss_rates` ({"ES": 21, ...}) as percentages; a bad entry is a ValueError naming it."""
    rates: dict[str, Decimal] = {}
    for country, value in (table or {}).items():
        try:
            rate = Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"oss_rates.{country}: {value!r} is not a rate") from None
        if len(str(country)) != 2 or not rate.is_finite() or not Decimal(0) <= rate <= 100:
            raise ValueError(f"oss_rates.{country}: {value!r} is not a country code with a rate in percent")
        rates[str(country).upper()] = rate
    return rates


def pt_tax_id(rate: Decimal) -> str | None:
    """The Vendus tax code of a mainland Portuguese rate (23 → NOR); None for any other rate."""
    return PT_TAX_IDS.get(rate.normalize() if rate else Decimal("0"))


def rate_text(rate: Decimal) -> str:
    """23 → "23", 25.5 → "25.5": a rate as written on an invoice and compared in tests."""
    text = format(rate.normalize(), "f")
    return text
