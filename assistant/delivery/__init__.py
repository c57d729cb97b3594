"""Delivery: result objects → each destination, exactly once (the ``outbox``), through
one sender per destination kind (``senders``). Imports neither intake nor analysis.
"""
