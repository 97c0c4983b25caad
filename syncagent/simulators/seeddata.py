"""Deterministic, realistic seed data shared by the simulators.

Both simulators are seeded from the same functions with the same seed, so the tablet app's
orders name products, sellers and payment methods that exist in the back office, and some
tablet customers carry CPFs that the back office already has. Everything is a pure function
of (seed, index): no global state, cheap to generate a million rows.

Products (with their price and stock) and customers, the records made by the million, take their
random choices from `draws`: one blake2b digest per record, read as eight 64-bit words. Seeding a
`random.Random` from a string costs a sha512 and a 624-word state per record, and was most of
the time it took to seed a large back office. The rarer records (sellers, tablet customers and
orders) still use `rng_for`.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from hashlib import blake2b
from operator import mul
from typing import TypeVar

T = TypeVar("T")

FIRST_NAMES = [
    "Ana", "João", "Maria", "José", "Francisca", "Antônio", "Adriana", "Carlos", "Juliana", "Paulo",
    "Márcia", "Pedro", "Fernanda", "Lucas", "Patrícia", "Gabriel", "Aline", "Rafael", "Camila", "Marcos",
    "Beatriz", "Luís", "Larissa", "Thiago", "Letícia", "Rodrigo", "Vanessa", "Bruno", "Débora", "Felipe",
]
LAST_NAMES = [
    "Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima", "Gomes",
    "Costa", "Ribeiro", "Martins", "Carvalho", "Almeida", "Lopes", "Soares", "Fernandes", "Vieira", "Barbosa",
    "Rocha", "Dias", "Nascimento", "Andrade", "Moreira", "Nunes", "Marques", "Machado", "Mendes", "Freitas",
]
CITIES = [
    ("São Paulo", "SP"), ("Rio de Janeiro", "RJ"), ("Belo Horizonte", "MG"), ("Curitiba", "PR"),
    ("Porto Alegre", "RS"), ("Salvador", "BA"), ("Recife", "PE"), ("Fortaleza", "CE"), ("Goiânia", "GO"),
    ("Florianópolis", "SC"), ("Campinas", "SP"), ("Niterói", "RJ"),
]
STREETS = ["Rua das Flores", "Avenida Brasil", "Rua Sete de Setembro", "Rua XV de Novembro", "Avenida Paulista",
           "Rua da Consolação", "Rua Augusta", "Avenida Atlântica", "Rua Direita", "Travessa do Comércio"]
DISTRICTS = ["Centro", "Jardim América", "Vila Nova", "Boa Vista", "Santa Cecília", "Copacabana", "Savassi"]
PRODUCT_KINDS = [
    ("Camiseta", "VEST"), ("Calça Jeans", "VEST"), ("Tênis de Corrida", "CALC"), ("Sandália", "CALC"),
    ("Mochila", "ACES"), ("Boné", "ACES"), ("Jaqueta", "VEST"), ("Bermuda", "VEST"), ("Meia", "VEST"),
    ("Relógio", "ACES"), ("Óculos de Sol", "ACES"), ("Bota", "CALC"), ("Vestido", "VEST"), ("Cinto", "ACES"),
]
COLOURS = ["Preto", "Branco", "Azul", "Vermelho", "Verde", "Cinza", "Bege", "Rosa", "Marinho", "Amarelo"]
SIZES = ["PP", "P", "M", "G", "GG", "34", "36", "38", "40", "42", "Único"]
BRANDS = ["Olympikus", "Havaianas", "Hering", "Reserva", "Osklen", "Mormaii", "Colcci", "Farm", "Rider", "Kildare"]

GROUPS = [
    # code, description, parent
    ("VEST", "Vestuário", None), ("CALC", "Calçados", None), ("ACES", "Acessórios", None),
    ("VEST-MASC", "Vestuário Masculino", "VEST"), ("VEST-FEM", "Vestuário Feminino", "VEST"),
    ("CALC-ESP", "Calçados Esportivos", "CALC"),
]
PAYMENT_METHODS = [
    # code, description, type, max installments
    ("DIN", "Dinheiro", "cash", 1), ("CC", "Cartão de Crédito", "credit_card", 10),
    ("CD", "Cartão de Débito", "debit_card", 1), ("PIX", "Pix", "pix", 1),
    ("BOL", "Boleto Bancário", "boleto", 1), ("VALE", "Vale-Troca", "voucher", 1),
]
WAREHOUSES = [
    # code, name, store
    ("CD01", "Centro de Distribuição Guarulhos", None), ("LJ01", "Loja Centro", "L01"),
    ("LJ02", "Loja Shopping Norte", "L02"), ("LJ03", "Loja Savassi", "L03"),
]
STORES = ["L01", "L02", "L03"]
EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def rng_for(seed: int, kind: str, index: int) -> random.Random:
    return random.Random(f"{seed}:{kind}:{index}")


Words = tuple[int, ...]
_WORDS = struct.Struct("<8Q").unpack


def draws(seed: int, kind: str, index: int) -> Words:
    """Eight independent uniform 64-bit words for record `index`: a sixth of the cost of one `rng_for`.

    Callers take values with `word % n` (and `word // n` for the next one); while the product of
    the ranges taken from one word stays far below 2**64 (it does, see each caller) every value
    is uniform to within 1e-6.
    """
    return _WORDS(blake2b(f"{seed}:{kind}:{index}".encode()).digest())


def cpf(rng: random.Random) -> str:
    return cpf_from(rng.randrange(10**9))


def cnpj(rng: random.Random) -> str:
    return cnpj_from(rng.randrange(10**8))


_DIGITS = tuple(tuple(int(d) for d in f"{g:03d}") for g in range(1000))  # check digits by table, 3 at a time
# the weighted sums of every 3-digit group under the EAN weights 3,1,3 and 1,3,1 (one per product)
_EAN_313, _EAN_131 = (tuple(sum(map(mul, d, w)) for d in _DIGITS) for w in ((3, 1, 3), (1, 3, 1)))
CPF_WEIGHTS = (11, 10, 9, 8, 7, 6, 5, 4, 3, 2)
CNPJ_WEIGHTS = (0, 6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)  # 0: the leading digit of a 9-digit spelling of 8


def _digits9(number: int) -> tuple[int, ...]:
    """The 9 decimal digits of 0 <= `number` < 10**9."""
    return _DIGITS[number // 1_000_000] + _DIGITS[number // 1000 % 1000] + _DIGITS[number % 1000]


def _mod11(digits: tuple[int, ...], weights: tuple[int, ...]) -> int:
    """The CPF/CNPJ check digit: 11 minus the weighted sum mod 11, 0 when that makes 10 or 11."""
    check = sum(map(mul, digits, weights)) % 11
    return 0 if check < 2 else 11 - check


def cpf_from(number: int) -> str:
    """The CPF whose 9-digit body is `number` mod 10**9 (a body of one repeated digit, never valid, is moved)."""
    number %= 10**9
    if number % 111_111_111 == 0:
        number ^= 1
    digits = _digits9(number)
    first = _mod11(digits, CPF_WEIGHTS[1:])
    return f"{number:09d}{first}{_mod11((*digits, first), CPF_WEIGHTS)}"


def cnpj_from(number: int) -> str:
    """The CNPJ of the head office (0001) of the company whose 8-digit root is `number` mod 10**8."""
    number %= 10**8
    digits = (*_digits9(number), 0, 0, 0, 1)
    first = _mod11(digits, CNPJ_WEIGHTS[1:])
    return f"{number:08d}0001{first}{_mod11((*digits, first), CNPJ_WEIGHTS)}"


def ean13(number: int) -> str:
    """A valid EAN-13 in the Brazilian GS1 prefix (789) for a product index."""
    if 0 <= number < 10**9:  # "789" weighs 7 + 8*3 + 9 = 40; the 9 digits weigh 3,1,3 1,3,1 3,1,3
        total = 40 + _EAN_313[number // 1_000_000] + _EAN_131[number // 1000 % 1000] + _EAN_313[number % 1000]
        return f"789{number:09d}{(10 - total % 10) % 10}"
    body = f"789{number:09d}"[:12]
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def person_name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)} {rng.choice(LAST_NAMES)}"


def product_code(index: int) -> str:
    return f"P{index:06d}"


NCMS = ["61091000", "62034200", "64041100", "42029200", "65050022", "91021100"]
SUBGROUPS = {"VEST": ("VEST-MASC", "VEST-FEM"), "CALC": ("CALC", "CALC-ESP")}
# description, brand, group_code, unit, ncm, weight_kg, height_cm, width_cm, length_cm, active
ProductFields = tuple[str, str, str, str, str, str, str, str, str, bool]
# list_price, promo_price, promo_start, promo_end, the scheduled change (list_price, starts_at) or None
PriceFields = tuple[str, str | None, str | None, str | None, tuple[str, str] | None]
StockLevels = tuple[tuple[int, int], ...]  # (available, reserved) in each of WAREHOUSES, in order
# A product's digest: words 0-1 the product, 2-3 its price, 4.. its stock in each warehouse.
STOCK_WORD = {code: 4 + i for i, (code, _name, _store) in enumerate(WAREHOUSES)}
if len(STOCK_WORD) > 4:
    raise ValueError("a product's digest has stock words for 4 warehouses; give stock a digest of its own")


def pick(word: int, choices: Sequence[T]) -> tuple[int, T]:
    """One of `choices` drawn from a digest word, and what is left of the word for the next draw."""
    word, k = divmod(word, len(choices))
    return word, choices[k]


def product_fields(first: int, second: int) -> ProductFields:
    """A product's drawn fields from two words (ranges 14*10*10*11*2*6 and 2401*39*41*51*10000, < 2**41)."""
    first, (kind, group) = pick(first, PRODUCT_KINDS)
    first, brand = pick(first, BRANDS)
    first, colour = pick(first, COLOURS)
    first, size = pick(first, SIZES)
    first, k = divmod(first, 2)
    sub = SUBGROUPS[group][k] if group in SUBGROUPS else group
    second, grams = divmod(second, 2401)  # 0.100 to 2.500 kg
    grams += 100
    second, height = divmod(second, 39)
    second, width = divmod(second, 41)
    second, length = divmod(second, 51)
    return (f"{kind} {brand} {colour} {size}", brand, sub, "PAR" if kind == "Meia" else "UN",
            NCMS[first % len(NCMS)], f"{grams // 1000}.{grams % 1000:03d}", str(2 + height), str(10 + width),
            str(10 + length), second % 10_000 >= 300)  # 3 % inactive


@lru_cache(maxsize=1024)
def _days_after(now: datetime, days: int) -> str:
    """`now` moved by `days`, as iso text: the promotions of a million prices share a few dozen dates."""
    return iso(now + timedelta(days=days))


def price_fields(first: int, second: int, now: datetime) -> PriceFields:
    """A price's drawn fields from two words (ranges 58001*100*9*30 and 100*60, < 2**31)."""
    first, cents = divmod(first, 58001)
    cents += 1990
    first, roll = divmod(first, 100)
    promo: tuple[str | None, str | None, str | None] = (None, None, None)
    if roll < 15:  # a promotion running now, ending in 3 to 30 days
        first, start = divmod(first, 5)
        promo = (f"{cents * 0.8 / 100:.2f}", _days_after(now, -1 - start), _days_after(now, 3 + first % 28))
    elif roll < 20:  # a promotion starting later
        first, start = divmod(first, 9)
        promo = (f"{cents * 0.7 / 100:.2f}", _days_after(now, 2 + start), _days_after(now, 11 + first % 30))
    second, roll = divmod(second, 100)
    scheduled = (f"{cents * 1.1 / 100:.2f}", _days_after(now, 1 + second % 60)) if roll < 8 else None
    return f"{cents / 100:.2f}", *promo, scheduled


def stock_levels(words: Words) -> StockLevels:
    """(available, reserved) in each warehouse from its word (range 121*10*6, < 2**13)."""
    levels = []
    for code, i in STOCK_WORD.items():
        word, available = divmod(words[i], 121 if code == "CD01" else 26)
        word, roll = divmod(word, 10)
        levels.append((available, word % (min(available, 5) + 1) if roll < 3 else 0))
    return tuple(levels)


def catalogue_item(seed: int, index: int, now: datetime = EPOCH) -> tuple[ProductFields, PriceFields, StockLevels]:
    """Product `index` with its price and stock from one digest: what the back office seeds a million of."""
    words = draws(seed, "product", index)
    return product_fields(words[0], words[1]), price_fields(words[2], words[3], now), stock_levels(words)


def product(seed: int, index: int) -> dict:
    """Back office product `index` (1-based)."""
    words = draws(seed, "product", index)
    description, brand, group, unit, ncm, weight, height, width, length, active = product_fields(words[0], words[1])
    return {
        "code": product_code(index), "description": description, "barcode": ean13(index), "brand": brand,
        "group_code": group, "unit": unit, "ncm": ncm, "weight_kg": weight, "height_cm": height,
        "width_cm": width, "length_cm": length, "active": active,
    }


def price(seed: int, index: int, now: datetime = EPOCH) -> dict:
    """Price of product `index`: some with a promotion (past, running, future), some scheduled."""
    words = draws(seed, "product", index)
    list_price, promo_price, promo_start, promo_end, scheduled = price_fields(words[2], words[3], now)
    return {
        "sku": product_code(index), "price_list": "default", "list_price": list_price, "promo_price": promo_price,
        "promo_start": promo_start, "promo_end": promo_end,
        "scheduled": [{"list_price": scheduled[0], "starts_at": scheduled[1]}] if scheduled else [],
    }


def stock(seed: int, index: int, warehouse: str) -> dict:
    """Balance of product `index` in `warehouse` (one of WAREHOUSES)."""
    available, reserved = stock_levels(draws(seed, "product", index))[STOCK_WORD[warehouse] - 4]
    return {"sku": product_code(index), "warehouse": warehouse, "available": available, "reserved": reserved}


COMPANY_SUFFIXES = ["Comércio", "Modas", "Esportes", "Distribuidora"]
# the e-mail name of a customer whose name starts with the key: lower case, no accents
MAILBOX = {name: name.lower().translate(str.maketrans("áâãéêíóôõúç", "aaaeeiooouc"))
           for name in FIRST_NAMES + LAST_NAMES}


def customer(seed: int, index: int) -> dict:
    """Back office customer `index` (1-based); every 7th is a company (CNPJ).

    Its draws come from one digest: word 0 the names and places (range 12*10*7*30**3*4, < 2**27),
    1 the document, 2 the phone (89*9*10**7, < 2**33), 3 the birth date and house number
    (56*12*28*3000, < 2**26), 4 the state registration, 5 the ZIP code.
    """
    words = draws(seed, "customer", index)
    company = index % 7 == 0
    places, (city, state) = pick(words[0], CITIES)
    places, street = pick(places, STREETS)
    places, district = pick(places, DISTRICTS)
    places, first = divmod(places, len(FIRST_NAMES))
    places, second = divmod(places, len(LAST_NAMES))
    places, third = divmod(places, len(LAST_NAMES))
    if company:
        name = f"{LAST_NAMES[second]} {COMPANY_SUFFIXES[places % len(COMPANY_SUFFIXES)]} Ltda"
    else:
        name = f"{FIRST_NAMES[first]} {LAST_NAMES[second]} {LAST_NAMES[third]}"
    area, number = divmod(words[2] % (89 * 9 * 10**7), 9 * 10**7)
    born, house = divmod(words[3], 3000)
    born, year = divmod(born, 56)
    day, month = divmod(born, 12)
    return {
        "code": f"C{index:06d}",
        "document": cnpj_from(words[1]) if company else cpf_from(words[1]),
        "name": name,
        "email": f"{MAILBOX[name.split()[0]]}{index}@exemplo.com.br",
        "phone": f"+55{11 + area}9{10**7 + number}",
        "birth_date": None if company else f"{1950 + year}-{1 + month:02d}-{1 + day % 28:02d}",
        "state_registration": str(10**8 + words[4] % (9 * 10**8)) if company else None,
        "address": {
            "street": street, "number": str(1 + house), "complement": None,
            "district": district, "city": city, "state": state,
            "zip": f"{10**6 + words[5] % (99 * 10**6):08d}", "country": "BR",
        },
    }


def seller(seed: int, index: int) -> dict:
    rng = rng_for(seed, "seller", index)
    name = person_name(rng)
    return {
        "code": f"V{index:03d}", "name": name, "email": f"vendedor{index}@loja.com.br",
        "store_code": STORES[index % len(STORES)], "commission_pct": f"{rng.choice([2, 3, 5])}.00", "active": True,
    }


def tablet_customer(seed: int, index: int, backoffice_customers: int) -> dict:
    """Tablet customer `index`: every 3rd one carries the CPF of an existing back office customer."""
    rng = rng_for(seed, "tablet-customer", index)
    if index % 3 == 0 and backoffice_customers:
        existing = customer(seed, 1 + (index * 7919) % backoffice_customers)
        base = {"document": existing["document"], "name": existing["name"], "email": existing["email"],
                "phone": existing["phone"]}
    else:
        base = {"document": cpf(rng), "name": person_name(rng), "email": None,
                "phone": f"+55{rng.randint(11, 99)}9{rng.randint(10000000, 99999999)}"}
    city, state = rng.choice(CITIES)
    base["address"] = {"street": rng.choice(STREETS), "number": str(rng.randint(1, 999)), "complement": None,
                       "district": rng.choice(DISTRICTS), "city": city, "state": state,
                       "zip": f"{rng.randint(1000000, 99999999):08d}"}
    return base


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Credentials the simulators accept unless told otherwise (demo and tests only).
DEMO_CLIENT_ID = "syncagent-demo"
DEMO_CLIENT_SECRET = "demo-secret"  # noqa: S105 - a simulator's demo credential, not a real secret
DEMO_API_KEY = "demo-key"


def customer_count(products: int) -> int:
    """How many back office customers a simulator of `products` products holds."""
    return max(60, products // 4)


def seller_count() -> int:
    return 8
