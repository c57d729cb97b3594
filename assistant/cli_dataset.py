"""`radassist dataset export`: the series this node analysed, labelled by its
radiologists' feedback, written as a training dataset (assistant/training/reviewed.py)
that `radassist train --dataset dicom:OUT/series:OUT/labels.csv` reads.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path

from assistant.cli_models import ActionMaker
from assistant.settings import Settings


def _day(text: str) -> date:
    """An argparse type: YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def cmd_dataset(settings: Settings, args: argparse.Namespace) -> int:
    """Run `radassist dataset export` and print what the dataset holds."""
    from assistant.cli import open_database
    from assistant.cli_models import cli_user
    from assistant.training.reviewed import DatasetExportError, export_reviewed

    if args.dataset_command != "export":
        raise AssertionError(args.dataset_command)
    out = Path(args.out).absolute()
    db = open_database(settings)
    try:
        manifest = export_reviewed(
            db,
            settings.storage.data_dir,
            out,
            since=args.since,
            model=args.model,
            include_unreviewed=args.include_unreviewed,
            pseudonymise=args.pseudonymise,
            by=cli_user(),
        )
    except DatasetExportError as exc:
        print(f"radassist: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    labels = manifest.labels
    print(
        f"{manifest.series} series of {manifest.patients} patients written to {out}: "
        f"{labels['positive']} positive, {labels['negative']} negative"
        + (
            f", {manifest.sources.get('model', 0)} labelled by the model"
            if args.include_unreviewed
            else ""
        )
        + (" (pseudonymised)" if manifest.pseudonymised else "")
    )
    if manifest.left_out:
        reasons = Counter(item.reason for item in manifest.left_out)
        print(f"{len(manifest.left_out)} series left out:")
        for reason, count in sorted(reasons.items()):
            print(f"  {count}  {reason}")
    if not labels["positive"] or not labels["negative"]:
        print(
            "not yet a dataset to train on: it needs reviewed series of both classes "
            "(readers accept or reject findings, and mark missed ones, on the study page)"
        )
        return 0
    print(f"train with: radassist train --dataset dicom:{out / 'series'}:{out / 'labels.csv'}")
    return 0


def add_parsers(
    command: Callable[[str, str], argparse.ArgumentParser], action: ActionMaker
) -> None:
    """The `dataset` command, on the main parser."""
    dataset = command("dataset", "Datasets made from this node's studies.")
    actions = dataset.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    export = action(
        actions,
        "export",
        "Write the analysed series, labelled by the radiologists' feedback, as a training "
        "dataset: OUT/series/<n>/, OUT/labels.csv, OUT/manifest.json.",
    )
    export.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder")
    export.add_argument(
        "--since", type=_day, metavar="YYYY-MM-DD", help="only jobs finished on or after this day"
    )
    export.add_argument("--model", metavar="NAME[:VERSION]", help="only this model's jobs")
    export.add_argument(
        "--include-unreviewed",
        action="store_true",
        help="also series nobody reviewed, labelled with the model's call (label_source=model)",
    )
    export.add_argument(
        "--pseudonymise",
        action="store_true",
        help="DICOM PS3.15 basic profile: pseudonyms, dates shifted per patient, new UIDs",
    )
    dataset.set_defaults(func=cmd_dataset)
