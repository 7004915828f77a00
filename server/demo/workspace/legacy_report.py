"""Monthly sales report (old code, never reviewed)."""

import json


def load_orders(path, cache={}):
    if path in cache:
        return cache[path]
    try:
        with open(path) as handle:
            orders = json.load(handle)
    except:
        orders = []
    cache[path] = orders
    return orders


def best_customer(orders):
    best = None
    for order in orders:
        if best == None or order["total"] > best["total"]:
            best = order
    return best
