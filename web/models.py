"""The model registry on the dashboard: every model and route, one model's card and state
history, and, for a model in shadow, how it compares with the live one on the same
series, and the result of `radassist compare` kept on it. Admins change a model's state
here (the same as `radassist model …`); the node reads the registry for every job, so a
change holds from the next job on.

Promotion from shadow to live is guarded: where the shadow model's sensitivity interval
on the reviewed positives lies entirely below the live model's, it is refused with the
reason, unless the admin ticks the override and writes a reason (audited). A shadow
model with no reviewed series may be promoted; the page says plainly that nothing
reviewed backs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from assistant.db import AuditEvent, ModelState
from assistant.registry import ModelEntry, Registry, RegistryError, Routes
from assistant.registry.compare import MIN_REVIEWED, Comparison, Rate, baselines, compare
from web.auth import admin_required, record
from web.context import context

blueprint = Blueprint("models", __name__)

#: The state changes the page offers, from each state.
CHANGES: dict[ModelState, tuple[ModelState, ...]] = {
    ModelState.SHADOW: (ModelState.LIVE, ModelState.RETIRED),
    ModelState.LIVE: (ModelState.RETIRED,),
    ModelState.RETIRED: (ModelState.SHADOW,),
}
#: The longest reason kept with a change.
MAX_REASON = 500
#: The audit actions the registry writes for a model (its history on the page), and the
#: word the page gives each.
HISTORY_ACTIONS = {"model-add": "added", "model-state": "state", "model-compare": "compared"}
#: How the page (and assistant/registry/compare.py) decide what was right.
TRUTH_RULE = (
    "A series' truth is the latest study-level verdict a radiologist gave on a live "
    "(not shadow) analysis of it: accept means that analysis's call was right, reject "
    "that it was wrong, missed (a finding the model did not report) that it is positive. "
    "Without one, an accepted lesion on a live analysis makes the "
    "series positive. Series without such feedback are unreviewed: they count towards "
    "agreement only. Feedback is given on the live model's calls, so these figures lean "
    "towards what the live model showed."
)


def _registry() -> Registry:
    ctx = context()
    return Registry(ctx.db, ctx.settings.storage.data_dir)


def _entry(name: str, version: str) -> ModelEntry:
    entry = _registry().find(name, version)
    if entry is None:
        abort(404)
    return entry


def rate_text(rate: Rate) -> str:
    """A rate as the page writes it: "66.7 % (2 of 3; 95 % CI 20.8 to 93.9 %)", or
    "not measured (0 of 0)" where there was nothing to count."""
    fraction, interval = rate.fraction, rate.interval
    if fraction is None or interval is None:
        return f"not measured ({rate.count} of {rate.total})"
    low, high = interval
    return (
        f"{100 * fraction:.1f} % ({rate.count} of {rate.total}; "
        f"95 % CI {100 * low:.1f} to {100 * high:.1f} %)"
    )


@dataclass(frozen=True)
class CardView:
    """A model card's essentials, as the model page lists them."""

    description: str
    intended_use: str
    clinical_use: bool
    classes: list[str]
    input_spec: list[tuple[str, str]]
    training: list[tuple[str, str]]
    #: (split, [(metric, value)]) for each split the card reports on.
    metrics: list[tuple[str, list[tuple[str, str]]]]


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def card_view(card: dict[str, Any]) -> CardView:
    """What the page shows of a card: scalar training facts (not the per-epoch history),
    the input the model reads, and its metrics by split."""
    windows = [
        f"{w.get('name', '?')} {_plain(w.get('center'))}/{_plain(w.get('width'))} HU"
        for w in card.get("windows") or []
        if isinstance(w, dict)
    ]
    input_spec = [
        ("image size", f"{card.get('image_size', '?')} px"),
        ("windows (centre/width)", ", ".join(windows) or "none (data already scaled)"),
        ("input mask", str(card.get("input_mask") or "none")),
        ("study threshold", _plain(card.get("threshold", "?"))),
        ("slice threshold", _plain(card.get("slice_threshold", "?"))),
    ]
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    facts = [
        (str(key), _plain(value))
        for key, value in (training or {}).items()
        if isinstance(value, str | int | float | bool)
    ]
    metrics = []
    for split, values in (card.get("metrics") or {}).items():
        if isinstance(values, dict):
            metrics.append((str(split), [(str(k), _plain(v)) for k, v in values.items()]))
        else:
            metrics.append((str(split), [("value", _plain(values))]))
    return CardView(
        description=str(card.get("description", "")),
        intended_use=str(card.get("intended_use", "")),
        clinical_use=bool(card.get("clinical_use", False)),
        classes=[str(c) for c in card.get("classes") or []],
        input_spec=input_spec,
        training=facts,
        metrics=metrics,
    )


def _history(ref: str) -> list[AuditEvent]:
    """The model's registry audit rows (added, each state change), oldest first."""
    with context().sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action.in_(list(HISTORY_ACTIONS)), AuditEvent.target == ref)
                .order_by(AuditEvent.id)
            )
        )


def _comparisons(entry: ModelEntry) -> list[Comparison]:
    """A model in shadow against the live version of its name, or, where the name has
    none, against each live model that read a series it read."""
    db = context().db
    candidate = (entry.name, entry.version)
    return [compare(db, candidate, other) for other in baselines(db, *candidate)]


@dataclass(frozen=True)
class RecordedComparison:
    """A `radassist compare` result kept on a model (the candidate, B), as the page shows
    it: the rows (figure, A, B, B - A with its interval) and McNemar's test."""

    baseline: str
    candidate: str
    dataset: str
    split: str
    studies: str
    grouping: str
    #: (figure, A's value, B's value, B - A with its 95 % interval).
    rows: list[tuple[str, str, str, str]]
    mcnemar: str


def _figure(value: Any, signed: bool = False) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _side(result: dict[str, Any], key: str) -> dict[str, Any]:
    value = result.get(key)
    return value if isinstance(value, dict) else {}


def recorded_comparison(result: dict[str, Any] | None) -> RecordedComparison | None:
    """What the page shows of a kept `radassist compare` result; None when there is none.
    Read leniently: a field missing from it shows as "n/a", never as an error page."""
    if not result:
        return None
    a, b, difference = _side(result, "a"), _side(result, "b"), _side(result, "difference")
    rows = [("threshold", _figure(a.get("threshold")), _figure(b.get("threshold")), "")]
    for label, key in (
        ("AUC", "auc"),
        ("sensitivity", "sensitivity"),
        ("specificity", "specificity"),
    ):
        change = _side(difference, key)
        interval = change.get("ci95")
        spread = (
            f" (95 % CI {_figure(interval[0], True)} to {_figure(interval[1], True)})"
            if isinstance(interval, list) and len(interval) == 2
            else ""
        )
        rows.append(
            (
                label,
                _figure(a.get(key)),
                _figure(b.get(key)),
                _figure(change.get("value"), True) + spread,
            )
        )
    test = _side(result, "mcnemar")
    p_value = test.get("p_value")
    return RecordedComparison(
        baseline=str(a.get("model", "?")),
        candidate=str(b.get("model", "?")),
        dataset=str(result.get("dataset", "?")),
        split=str(result.get("split", "?")),
        studies=f"{a.get('n', '?')} studies, {a.get('positives', '?')} positive",
        grouping=(
            f"{result.get('bootstrap_resamples', '?')} paired bootstrap resamples of the "
            f"{result.get('groups', '?')} {'patients' if result.get('grouped_by') == 'patient' else 'studies'}"
        ),
        rows=rows,
        mcnemar=(
            f"A right and B wrong {test.get('a_right_b_wrong', '?')}, A wrong and B right "
            f"{test.get('a_wrong_b_right', '?')}; p = {_figure(p_value)}"
        ),
    )


def promotion_concerns(comparisons: list[Comparison]) -> list[str]:
    """Why making this shadow model live needs an override: each live model whose
    sensitivity on the reviewed positives is surely above the candidate's."""
    return [c.sensitivity_shortfall for c in comparisons if c.sensitivity_shortfall]


@blueprint.route("/models")
@login_required
def models() -> Any:
    return render_template(
        "models.html", models=_registry().models(), routes=Routes(context().db).all()
    )


@blueprint.route("/models/<name>/<version>")
@login_required
def model(name: str, version: str) -> Any:
    entry = _entry(name, version)
    shadow = entry.state is ModelState.SHADOW
    comparisons = _comparisons(entry) if shadow else []
    history = _history(entry.ref)
    return render_template(
        "model.html",
        model=entry,
        card=card_view(entry.card),
        history=history,
        history_words=HISTORY_ACTIONS,
        recorded=recorded_comparison(entry.comparison),
        recorded_event=next((e for e in reversed(history) if e.action == "model-compare"), None),
        shadow=shadow,
        comparisons=comparisons,
        no_evidence=shadow and not any(c.reviewed for c in comparisons),
        concerns=promotion_concerns(comparisons),
        changes=CHANGES[entry.state],
        rate_text=rate_text,
        truth_rule=TRUTH_RULE,
        min_reviewed=MIN_REVIEWED,
        max_reason=MAX_REASON,
    )


@blueprint.route("/models/<name>/<version>/state", methods=["POST"])
@admin_required
def change_state(name: str, version: str) -> Any:
    """Set the model's state to the form's `state` (one of CHANGES from its state now),
    with an optional `reason`; the registry audits it, and this records the request."""
    entry = _entry(name, version)
    back = redirect(url_for("models.model", name=name, version=version), 303)
    try:
        state = ModelState(request.form.get("state", ""))
    except ValueError:
        flash("Not changed: choose live, shadow or retired.", "error")
        return back
    if state not in CHANGES[entry.state]:
        allowed = " or ".join(s.value for s in CHANGES[entry.state])
        flash(f"Not changed: {entry.ref} is {entry.state.value}; it can go {allowed}.", "error")
        return back
    reason = " ".join(request.form.get("reason", "").split())[:MAX_REASON]
    concerns: list[str] = []
    evidence = True
    if entry.state is ModelState.SHADOW and state is ModelState.LIVE:
        comparisons = _comparisons(entry)
        concerns = promotion_concerns(comparisons)
        evidence = any(c.reviewed for c in comparisons)
        refusal = _promotion_refusal(concerns, request.form.get("override") == "yes", reason)
        if refusal:
            flash(refusal, "error")
            return back
    audited_reason = f"override: {reason}" if concerns else reason
    try:
        changes = _registry().set_state(
            entry.ref, state, by=current_user.username, reason=audited_reason
        )
    except RegistryError as exc:
        flash(f"Not changed: {exc}.", "error")
        return back
    # The registry wrote who, what and why ("model-state" rows); this row adds that it
    # came from the dashboard, and from which address.
    if changes:
        notes = [] if evidence else ["no reviewed evidence"]
        record(
            "model_change",
            target=entry.ref,
            detail="dashboard: " + "; ".join([*changes, *notes]),
        )
    if changes and concerns:
        record(
            "model_promotion_override",
            target=entry.ref,
            detail=f"reason: {reason}; overridden: " + "; ".join(concerns),
        )
    for line in changes or [f"{entry.ref} is already {state.value}."]:
        flash(line, "info")
    return back


def _promotion_refusal(concerns: list[str], override: bool, reason: str) -> str | None:
    """Why a promotion with these concerns is refused (None: it may go ahead): refused
    without the override ticked, and with it but without a reason."""
    if not concerns:
        return None
    if not override:
        return (
            "Not changed: "
            + "; ".join(concerns)
            + ". Tick the override and give a reason to make it live all the same."
        )
    if not reason:
        return "Not changed: an override needs a reason (it is kept in the audit trail)."
    return None
