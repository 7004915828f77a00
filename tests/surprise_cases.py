"""A one-line bug the real 0.5B finds by surprise, and its clean original: shared by the
reviewer's unit tests and the server test."""

ORIGINAL = '''def busiest_day(sales):
    """The index of the day with the most sales; the first one on a tie."""
    best = 0
    for day in range(1, len(sales)):
        if sales[day] > sales[best]:
            best = day
    return best


def total_price(items):
    total = 0
    for item in items:
        total += item.price * item.quantity
    return total
'''
BUG_LINE = 13  # 0-based: the wrong returned name
MUTANT = ORIGINAL.replace("    return total", "    return item")
