"""`radassist compare A B --dataset SPEC`: two models on the same studies, each at its own
card's threshold, the differences (B - A) with paired bootstrap intervals, and McNemar's
exact test on their calls (assistant/training/compare.py). A model is a registry model
(NAME:VERSION) or a model folder; when both are registry models the result is kept on
B, the candidate, where the dashboard's model page shows it (audited, "model-compare").
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from assistant.cli_models import ActionMaker, RegistryOnDemand, cli_user, resolve_model
from assistant.settings import Settings

#: The rows of the table: (label, key in each model's figures and in "difference").
ROWS = (("AUC", "auc"), ("sensitivity", "sensitivity"), ("specificity", "specificity"))


def _number(value: Any, signed: bool = False) -> str:
    """A figure as the table writes it: four decimals, "n/a" where undefined."""
    if not isinstance(value, int | float):
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def comparison_lines(result: dict[str, Any]) -> list[str]:
    """What `compare` prints for people: a heading, one row per figure (A, B, B - A with
    its 95 % interval), then McNemar's test."""
    a, b, difference = result["a"], result["b"], result["difference"]
    rows = [
        ("", "A", "B", "B - A (95 % CI)"),
        ("model", a["model"], b["model"], ""),
        ("threshold", _number(a["threshold"]), _number(b["threshold"]), ""),
        ("n", str(a["n"]), str(b["n"]), ""),
        ("positives", str(a["positives"]), str(b["positives"]), ""),
    ]
    for label, key in ROWS:
        change = difference[key]
        interval = change["ci95"]
        spread = (
            f" ({_number(interval[0], True)} to {_number(interval[1], True)})" if interval else ""
        )
        rows.append(
            (label, _number(a[key]), _number(b[key]), _number(change["value"], True) + spread)
        )
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    test = result["mcnemar"]
    unit = "patients" if result["grouped_by"] == "patient" else "studies"
    return [
        f"{result['dataset']} ({result['split']}): {a['n']} studies, {a['positives']} positive",
        *(
            (
                "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
                + f"  {row[3]}"
            ).rstrip()
            for row in rows
        ),
        f"McNemar exact test on the calls: A right and B wrong {test['a_right_b_wrong']}, "
        f"A wrong and B right {test['a_wrong_b_right']}; p = {test['p_value']:.4f}",
        f"(intervals: {result['bootstrap_resamples']} paired bootstrap resamples of the "
        f"{result['groups']} {unit}; each model at its own card's threshold)",
    ]


def cmd_compare(settings: Settings, args: argparse.Namespace) -> int:
    """Compare models A and B on one split; keep the result on B when both are registry
    models."""
    from assistant.training.compare import compare_models

    registry = RegistryOnDemand(settings)
    try:
        folder_a, entry_a = resolve_model(args.a, registry)
        folder_b, entry_b = resolve_model(args.b, registry)
        result = compare_models(
            folder_a, folder_b, args.dataset, args.split, resamples=args.bootstrap
        )
        recorded = entry_a is not None and entry_b is not None
        if recorded:
            assert entry_b is not None
            registry().record_comparison(entry_b.ref, result, by=cli_user())
        if args.json:
            print(json.dumps(result, allow_nan=False))
            return 0
        print("\n".join(comparison_lines(result)))
        if recorded:
            assert entry_b is not None
            print(f"kept on {entry_b.ref} in the registry: its page on the dashboard shows it")
        return 0
    finally:
        registry.close()


def add_parsers(
    command: Callable[[str, str], argparse.ArgumentParser], action: ActionMaker
) -> None:
    """The `compare` command, on the main parser (`action` is unused: it has none)."""
    del action
    compare = command(
        "compare",
        "Two models on the same studies: AUC, sensitivity and specificity at each card's "
        "threshold, the differences (B - A) with paired bootstrap confidence intervals, and "
        "McNemar's exact test on the calls. Kept on B when both are registry models.",
    )
    compare.add_argument("a", metavar="A", help="NAME:VERSION in the registry, or a model folder")
    compare.add_argument(
        "b", metavar="B", help="the candidate: NAME:VERSION in the registry, or a model folder"
    )
    compare.add_argument("--dataset", required=True, metavar="SPEC")
    compare.add_argument("--split", default="test", choices=["train", "val", "test"])
    compare.add_argument("--json", action="store_true", help="print one JSON object")
    compare.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="paired resamples behind each difference's 95%% interval (0: none; default 1000)",
    )
    compare.set_defaults(func=cmd_compare)
