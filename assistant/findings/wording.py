"""How the node writes a model's numbers for people, the same wherever they read them:
the SR's and key-object note's text, the dashboard and `radassist predict`."""

from __future__ import annotations


def percent(probability: float) -> str:
    """A probability in percent with one decimal, "97.2 %", as the SR's measurements
    give it (UCUM %): a radiologist should not meet 0.97 in one place and 97 % in another."""
    return f"{100 * probability:.1f} %"
