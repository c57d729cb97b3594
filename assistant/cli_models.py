"""`radassist model …` and `radassist route …`: the model registry and the routes from
the command line. Every change (models and routes) is audited under the operating-system user's
name ("cli:<user>"); running nodes see it from their next series and job, without a
restart.
"""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.settings import Settings

if TYPE_CHECKING:
    from assistant.db import Database
    from assistant.registry import ModelEntry, Registry

ActionMaker = Callable[
    ["argparse._SubParsersAction[argparse.ArgumentParser]", str, str], argparse.ArgumentParser
]


def cli_user() -> str:
    """Who made a change from the command line, for the audit trail."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _registry(settings: Settings):  # type: ignore[no-untyped-def]
    from assistant.cli import open_database, register_first_model

    db = open_database(settings)
    return db, register_first_model(settings, db)


class RegistryOnDemand:
    """The registry, opened the first time it is asked for (a command given model
    folders only never opens the database); `close` disposes of what was opened."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._opened: tuple[Database, Registry] | None = None

    def __call__(self) -> Registry:
        if self._opened is None:
            self._opened = _registry(self._settings)
        return self._opened[1]

    def close(self) -> None:
        if self._opened is not None:
            self._opened[0].dispose()
            self._opened = None


def resolve_model(text: str, registry: Callable[[], Registry]) -> tuple[Path, ModelEntry | None]:
    """A model folder (a directory holding model.json) as it is, else a registry model's
    folder and entry; the registered weights' hash must still be the card's."""
    from assistant.analysis.model.card import CARD_FILE, read_card
    from assistant.analysis.model.folder import ModelIntegrityError

    folder = Path(text)
    # A registry name has no "/"; a path that is not a model folder fails as one.
    if (folder / CARD_FILE).is_file() or "/" in text or folder.exists():
        read_card(folder)  # ModelCardError, naming the folder, for one without a card
        return folder, None
    entry = registry().get(text)
    if read_card(entry.folder).weights_sha256 != entry.weights_sha256:
        raise ModelIntegrityError(
            f"{entry.ref}: the card in {entry.folder} names weights other than the ones registered"
        )
    return entry.folder, entry


def _lines(entry: ModelEntry) -> list[str]:
    card = entry.card
    training = card.get("training", {}) or {}
    metrics = card.get("metrics", {}) or {}
    windows = ", ".join(
        f"{w.get('name', '?')} {w.get('center', '?')}/{w.get('width', '?')}"
        for w in card.get("windows", []) or []
    )
    lines = [
        f"{entry.ref}  ({entry.state.value}, {entry.format})",
        f"  classes: {' / '.join(card.get('classes', []) or [])}",
        f"  input: {card.get('image_size')}² px, windows {windows or '(none)'}"
        + (f", masked {card['input_mask']}" if card.get("input_mask") else ""),
        f"  threshold: {card.get('threshold')}",
        f"  training data: {training.get('dataset', '(not stated)')}",
    ]
    if isinstance(metrics, dict) and metrics:
        shown = []
        for split, values in metrics.items():
            if isinstance(values, dict):
                parts = [
                    f"{k} {values[k]}"
                    for k in ("auc", "sensitivity", "specificity", "n")
                    if k in values
                ]
                shown.append(f"{split}: {', '.join(parts)}")
        if shown:
            lines.append("  metrics: " + "; ".join(shown))
    lines += [
        f"  weights sha256: {entry.weights_sha256}",
        f"  added {entry.added_at:%Y-%m-%d %H:%M} UTC by {entry.added_by}"
        + (f", fine-tuned from {entry.parent}" if entry.parent else ""),
        f"  state since {entry.state_changed_at:%Y-%m-%d %H:%M} UTC, set by {entry.state_changed_by}",
    ]
    return lines


def cmd_model(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.db import ModelState

    db, registry = _registry(settings)
    try:
        action = args.model_command
        if action == "add":
            from assistant.analysis.model.registering import add_model

            entry = add_model(
                registry, Path(args.folder), state=ModelState(args.state), by=cli_user()
            )
            print(f"added {entry.ref} ({entry.state.value}) in {entry.folder}")
            if entry.state is ModelState.SHADOW:
                print(
                    f"it reads the series its routes send to {entry.name} and sends nothing; "
                    f"make it live with `radassist model set-state {entry.ref} live`"
                )
            return 0
        if action == "list":
            entries = registry.models()
            if args.json:
                print(json.dumps([e.to_dict() for e in entries], indent=2))
                return 0
            print(f"{'MODEL':<40} {'STATE':<8} {'FORMAT':<11} {'CLASSES':<32} ADDED")
            for e in entries:
                classes = " / ".join(e.card.get("classes", []) or [])
                print(
                    f"{e.ref:<40} {e.state.value:<8} {e.format:<11} {classes[:32]:<32} "
                    f"{e.added_at:%Y-%m-%d} by {e.added_by}"
                )
            return 0
        if action == "show":
            entry = registry.get(args.ref)
            if args.json:
                print(json.dumps(entry.to_dict(), indent=2))
            else:
                print("\n".join(_lines(entry)))
            return 0
        if action == "set-state":
            changes = registry.set_state(
                args.ref, ModelState(args.state), by=cli_user(), reason=args.reason or ""
            )
            print("\n".join(changes) if changes else f"{args.ref} is already {args.state}")
            return 0
        if action == "export":
            from assistant.analysis.model.folder import ModelIntegrityError, load_model
            from assistant.analysis.model.torchscript import export_torchscript

            entry = registry.get(args.ref)
            loaded = load_model(entry.folder)
            if loaded.card.weights_sha256 != entry.weights_sha256:
                raise ModelIntegrityError(
                    f"{entry.ref}: the card in {entry.folder} names weights other than the "
                    "ones registered"
                )
            card = export_torchscript(loaded, Path(args.torchscript), version=args.version)
            print(
                f"TorchScript model {card.ref} written to {args.torchscript}; add it with "
                f"`radassist model add {args.torchscript}`"
            )
            return 0
        raise AssertionError(action)
    finally:
        db.dispose()


def cmd_route(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.registry import RegistryError, Route, Routes

    db, registry = _registry(settings)
    try:
        routes = Routes(db)
        if args.route_command == "add":
            if not any(e.name == args.model for e in registry.models()):
                raise RegistryError(f"no model named {args.model} in the registry")
            route = Route(
                name=args.name,
                model_name=args.model,
                modalities=tuple(args.modality or ()),
                series_description_patterns=tuple(args.series_description or ()),
                body_part_patterns=tuple(args.body_part or ()),
                calling_ae_titles=tuple(args.calling_ae or ()),
                min_slice_thickness_mm=args.min_slice_thickness,
                max_slice_thickness_mm=args.max_slice_thickness,
            )
            routes.add(route, by=cli_user())
            print(f"route {route.name}: {route.describe()} → {route.model_name}")
            return 0
        if args.route_command == "list":
            every = routes.all()
            if args.json:
                print(json.dumps([r.to_dict() for r in every], indent=2))
            elif not every:
                print("no routes: every live and shadow model reads every selected series")
            else:
                for r in every:
                    print(f"{r.name}: {r.describe()} → {r.model_name}")
            return 0
        if args.route_command == "remove":
            routes.remove(args.name, by=cli_user())
            print(f"route {args.name} removed")
            return 0
        raise AssertionError(args.route_command)
    finally:
        db.dispose()


def add_parsers(
    command: Callable[[str, str], argparse.ArgumentParser], action: ActionMaker
) -> None:
    """The `model` and `route` commands, on the main parser."""
    model = command(
        "model",
        "The model registry: add a model folder, list, show, change a model's state, export "
        "to TorchScript.",
    )
    actions = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    add = action(
        actions,
        "add",
        "Check a model folder (card, weights sha256, a test run on a synthetic series) and "
        "add it to the registry.",
    )
    add.add_argument("folder", metavar="DIR")
    add.add_argument(
        "--state",
        choices=["shadow", "live", "retired"],
        default="shadow",
        help="shadow (default): it reads and its results are kept, never sent",
    )
    listing = action(actions, "list", "Every registered model: state, format, classes, added.")
    listing.add_argument("--json", action="store_true")
    show = action(actions, "show", "One model's card: input, training data, metrics, history.")
    show.add_argument("ref", metavar="NAME[:VERSION]")
    show.add_argument("--json", action="store_true")
    state = action(
        actions,
        "set-state",
        "Make a model live (the name's live version is retired), shadow or retired; "
        "running nodes follow from their next job.",
    )
    state.add_argument("ref", metavar="NAME:VERSION")
    state.add_argument("state", choices=["live", "shadow", "retired"])
    state.add_argument("--reason", metavar="TEXT", help="kept in the audit trail")
    export = action(actions, "export", "Write a registered model as a TorchScript model folder.")
    export.add_argument("ref", metavar="NAME[:VERSION]")
    export.add_argument("--torchscript", required=True, metavar="OUT_DIR")
    export.add_argument(
        "--version", help="the exported card's version (default: VERSION+torchscript)"
    )
    model.set_defaults(func=cmd_model)

    route = command(
        "route",
        "Routes: which series each model reads (every condition given must hold). A model "
        "that no route names reads every selected series.",
    )
    route_actions = route.add_subparsers(dest="route_command", required=True, metavar="ACTION")
    add_route = action(route_actions, "add", "Send the series that meet these conditions to MODEL.")
    add_route.add_argument("name", metavar="NAME")
    add_route.add_argument("--model", required=True, metavar="MODEL", help="a model name")
    add_route.add_argument("--modality", action="append", metavar="M")
    add_route.add_argument(
        "--series-description", action="append", metavar="PATTERN", help="e.g. '*HEAD*'"
    )
    add_route.add_argument("--body-part", action="append", metavar="PATTERN")
    add_route.add_argument("--calling-ae", action="append", metavar="AE")
    add_route.add_argument("--min-slice-thickness", type=float, metavar="MM")
    add_route.add_argument("--max-slice-thickness", type=float, metavar="MM")
    route_list = action(route_actions, "list", "The routes and their conditions.")
    route_list.add_argument("--json", action="store_true")
    action(route_actions, "remove", "Remove a route.").add_argument("name", metavar="NAME")
    route.set_defaults(func=cmd_route)
