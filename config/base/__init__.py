"""The base layer: what every other layer may import (languages, text edits, context types).

It imports nothing of memlsp, so nothing here can pull a model, a store or the server in.
"""
