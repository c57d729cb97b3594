"""Patient names in the character sets sites use, each with the Specific Character Set
that holds it (an empty first value is the usual form at Japanese and Korean sites)."""

from __future__ import annotations

CASES: list[tuple[str | list[str], str]] = [
    ("ISO_IR 192", "Müller^Jürgen=王^小东"),
    (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    (["ISO 2022 IR 6", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    (["", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞=홍^길동"),
    ("GB18030", "Wang^Xiaodong=王^小东"),
    ("ISO_IR 100", "Ångström^Zoë"),
]
