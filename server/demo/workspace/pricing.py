"""Prices, taxes and the loyalty programme of the shop."""

VAT_RATE_PERCENT = 20
LOYALTY_TIERS = {"bronze": 5, "silver": 10, "gold": 15}


def apply_loyalty_discount(order_total_cents, tier):
    """The order total after the discount of the customer's loyalty tier (in cents)."""
    percent = LOYALTY_TIERS.get(tier, 0)
    return order_total_cents - order_total_cents * percent // 100


def add_vat(amount_cents):
    """The amount with value added tax."""
    return amount_cents + amount_cents * VAT_RATE_PERCENT // 100
