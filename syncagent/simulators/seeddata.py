"""Deterministic, realistic seed data shared by the simulators.

Both simulators are seeded from the same functions with the same seed, so the tablet app's
orders name products, sellers and payment methods that exist in the back office, and some
tablet customers carry CPFs that the back office already has. Everything is a pure function
of (seed, index): no global state, cheap to generate a million rows.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

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


def cpf(rng: random.Random) -> str:
    while True:
        body = [rng.randrange(10) for _ in range(9)]
        if len(set(body)) > 1:
            break
    for size in (9, 10):
        total = sum(d * w for d, w in zip(body, range(size + 1, 1, -1), strict=False))
        body.append((total * 10) % 11 % 10)
    return "".join(map(str, body))


def cnpj(rng: random.Random) -> str:
    body = [rng.randrange(10) for _ in range(8)] + [0, 0, 0, 1]
    weights = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
    for w in (weights, [6, *weights]):
        total = sum(d * k for d, k in zip(body, w, strict=False))
        check = 11 - total % 11
        body.append(0 if check >= 10 else check)
    return "".join(map(str, body))


def ean13(number: int) -> str:
    """A valid EAN-13 in the Brazilian GS1 prefix (789) for a product index."""
    body = f"789{number:09d}"[:12]
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def person_name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)} {rng.choice(LAST_NAMES)}"


def product_code(index: int) -> str:
    return f"P{index:06d}"


def product(seed: int, index: int) -> dict:
    """Back office product `index` (1-based)."""
    rng = rng_for(seed, "product", index)
    kind, group = rng.choice(PRODUCT_KINDS)
    brand = rng.choice(BRANDS)
    name = f"{kind} {brand} {rng.choice(COLOURS)} {rng.choice(SIZES)}"
    sub = {"VEST": rng.choice(["VEST-MASC", "VEST-FEM"]), "CALC": rng.choice(["CALC", "CALC-ESP"])}.get(group, group)
    return {
        "code": product_code(index),
        "description": name,
        "barcode": ean13(index),
        "brand": brand,
        "group_code": sub,
        "unit": "UN" if kind != "Meia" else "PAR",
        "ncm": rng.choice(["61091000", "62034200", "64041100", "42029200", "65050022", "91021100"]),
        "weight_kg": f"{rng.uniform(0.1, 2.5):.3f}",
        "height_cm": str(rng.randint(2, 40)),
        "width_cm": str(rng.randint(10, 50)),
        "length_cm": str(rng.randint(10, 60)),
        "active": rng.random() > 0.03,
    }


def price(seed: int, index: int, now: datetime = EPOCH) -> dict:
    """Price of product `index`: some with a promotion (past, running, future), some scheduled."""
    rng = rng_for(seed, "price", index)
    cents = rng.randint(1990, 59990)
    row: dict = {
        "sku": product_code(index), "price_list": "default", "list_price": f"{cents / 100:.2f}",
        "promo_price": None, "promo_start": None, "promo_end": None, "scheduled": [],
    }
    roll = rng.random()
    if roll < 0.15:  # a promotion running now, ending in 3 to 30 days
        row["promo_price"] = f"{cents * 0.8 / 100:.2f}"
        row["promo_start"] = iso(now - timedelta(days=rng.randint(1, 5)))
        row["promo_end"] = iso(now + timedelta(days=rng.randint(3, 30)))
    elif roll < 0.20:  # a promotion starting later
        row["promo_price"] = f"{cents * 0.7 / 100:.2f}"
        row["promo_start"] = iso(now + timedelta(days=rng.randint(2, 10)))
        row["promo_end"] = iso(now + timedelta(days=rng.randint(11, 40)))
    if rng.random() < 0.08:  # a scheduled list-price change
        row["scheduled"] = [{"list_price": f"{cents * 1.1 / 100:.2f}",
                             "starts_at": iso(now + timedelta(days=rng.randint(1, 60)))}]
    return row


def stock(seed: int, index: int, warehouse: str) -> dict:
    rng = rng_for(seed, f"stock-{warehouse}", index)
    available = rng.randint(0, 120) if warehouse == "CD01" else rng.randint(0, 25)
    reserved = rng.randint(0, min(available, 5)) if rng.random() < 0.3 else 0
    return {"sku": product_code(index), "warehouse": warehouse, "available": available, "reserved": reserved}


def customer(seed: int, index: int) -> dict:
    """Back office customer `index` (1-based); every 7th is a company (CNPJ)."""
    rng = rng_for(seed, "customer", index)
    company = index % 7 == 0
    city, state = rng.choice(CITIES)
    name = f"{rng.choice(LAST_NAMES)} {rng.choice(['Comércio', 'Modas', 'Esportes', 'Distribuidora'])} Ltda" \
        if company else person_name(rng)
    first = name.split()[0].lower().translate(str.maketrans("áâãéêíóôõúç", "aaaeeiooouc"))
    return {
        "code": f"C{index:06d}",
        "document": cnpj(rng) if company else cpf(rng),
        "name": name,
        "email": f"{first}{index}@exemplo.com.br",
        "phone": f"+55{rng.randint(11, 99)}9{rng.randint(10000000, 99999999)}",
        "birth_date": None if company else f"{rng.randint(1950, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "state_registration": str(rng.randint(100000000, 999999999)) if company else None,
        "address": {
            "street": rng.choice(STREETS), "number": str(rng.randint(1, 3000)), "complement": None,
            "district": rng.choice(DISTRICTS), "city": city, "state": state,
            "zip": f"{rng.randint(1000000, 99999999):08d}", "country": "BR",
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
