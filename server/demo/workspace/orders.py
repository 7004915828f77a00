"""Orders and their lines."""

from dataclasses import dataclass, field


@dataclass
class OrderLine:
    sku: str
    unit_price_cents: int
    quantity: int = 1


@dataclass
class Order:
    customer_tier: str
    lines: list[OrderLine] = field(default_factory=list)

    def subtotal_cents(self):
        return sum(line.unit_price_cents * line.quantity for line in self.lines)
