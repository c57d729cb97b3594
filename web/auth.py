"""Who is calling, and what they may do.

Browsers log in with the form and get a server-side session (the cookie holds a random
id; the `web_session` table says whose, since when, and whether it ended): logout, a
password change or disabling the user ends it; so do `web.session_idle_minutes` unused
or `web.session_hours` in all. Every state change made with a session needs its CSRF
token, whatever other headers the request carries.

Machines (the JSON API, /metrics, DICOMweb) send HTTP Basic credentials (or, for
DICOMweb, the bearer token) with every request: those requests ignore any cookie and get
none, and a browser replaying cached Basic credentials from another site is refused.
Basic credentials never open the dashboard's HTML pages.

Wrong passwords are throttled per client address (exponential waits, no password
checked while waiting) and per account (locked after `auth.max_failures` in a row for
`auth.lockout_minutes`); both are audited.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import (
    LoginManager,
    UserMixin,
    current_user,
    login_required,
    login_user,
    logout_user,
)
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from assistant.access.sessions import SessionLimits, end_session, session_user, start_session
from assistant.access.users import (
    Account,
    Lockout,
    LoginOutcome,
    LoginResult,
    authenticate,
    user_count,
)
from assistant.db import Role
from web.context import context

blueprint = Blueprint("auth", __name__)

#: Paths where machines authenticate per request (header credentials, no cookie).
MACHINE_PATHS = ("/api/", "/metrics", "/dicomweb/")


class LoginUser(UserMixin):
    """The user of this request as Flask-Login sees it. For a browser `get_id()` is the
    session's token, so Flask-Login's cookie names the session, not the user."""

    def __init__(self, account: Account, token: str = "") -> None:
        self.account = account
        self.token = token

    def get_id(self) -> str:
        return self.token

    @property
    def username(self) -> str:
        return self.account.username

    @property
    def is_admin(self) -> bool:
        return self.account.is_admin

    @property
    def may_upload(self) -> bool:
        return self.account.may_upload


class LoginForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


def remote_addr() -> str:
    return request.remote_addr or ""


def machine_request() -> bool:
    """Credentials in a header, on a path machines use: authenticated per request."""
    credentials = request.authorization
    return (
        credentials is not None
        and credentials.type in ("basic", "bearer")
        and request.path.startswith(MACHINE_PATHS)
    )


def cross_site() -> bool:
    """A browser's request from another site (Fetch Metadata, else Origin): what a page
    elsewhere makes a browser send with credentials it cached for us."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("Origin") or ""
    return bool(origin) and origin.rstrip("/") != request.host_url.rstrip("/")


def record(action: str, target: str = "", detail: str = "", *, coalesce: bool = False) -> None:
    """An audit row for the current user and request."""
    username = current_user.username if current_user.is_authenticated else ""
    context().audit.record(
        action,
        username=username,
        target=target,
        remote_addr=remote_addr(),
        detail=detail,
        coalesce=coalesce,
    )


def _lockout() -> Lockout:
    settings = context().settings.auth
    return Lockout(settings.max_failures, settings.lockout_minutes)


def must_wait(how: str) -> bool:
    """True (g.retry_after set, audited) while this address must wait before its next
    credentials are even checked. Audited by address alone: an attacker's random names
    must not make a row each."""
    ctx, address = context(), remote_addr()
    wait = ctx.throttle.wait_seconds(address)
    if wait <= 0:
        return False
    g.retry_after = int(wait) + 1
    ctx.audit.record("login_throttled", remote_addr=address, detail=how, coalesce=True)
    return True


def count_failure(how: str, username: str = "") -> None:
    """Wrong credentials from this address: they count towards its wait, and are audited."""
    ctx, address = context(), remote_addr()
    ctx.throttle.failed(address)
    ctx.audit.record(
        "login_failed", username=username[:64], remote_addr=address, detail=how, coalesce=True
    )


def check_password(username: str, password: str, how: str) -> LoginResult | None:
    """Throttle, check, and audit one password; None while this address must wait (then
    g.retry_after holds the seconds)."""
    if must_wait(how):
        return None
    ctx = context()
    result = authenticate(ctx.db, username, password, _lockout(), ctx.verified)
    if result.outcome is LoginOutcome.OK:
        # Failures from this address are not forgiven by a success: one account of its
        # own would otherwise let an attacker spray guesses at the others.
        return result
    count_failure(f"{how}: {result.outcome.value}", username)
    if result.locked_now_until is not None:
        ctx.audit.record(
            "account_locked",
            username=username[:64],
            remote_addr=remote_addr(),
            detail=f"until {result.locked_now_until:%Y-%m-%d %H:%M} UTC",
        )
    return result


def init_login(app: Any) -> LoginManager:
    manager = LoginManager(app)
    manager.login_view = "auth.login"
    manager.login_message = "Please log in."
    manager.session_protection = "strong"

    @manager.user_loader
    def _from_session(token: str) -> LoginUser | None:
        if machine_request():  # a machine's credentials are its own: ignore any cookie
            return None
        settings = context().settings.web
        limits = SessionLimits(
            idle=timedelta(minutes=settings.session_idle_minutes),
            absolute=timedelta(hours=settings.session_hours),
        )
        # The worklist's own refresh every 10 s is not a person using the session.
        user = session_user(context().db, token, limits, touch=not request.args.get("partial"))
        if user is None:
            return None
        return LoginUser(user, token)

    @manager.request_loader
    def _from_header(req: Any) -> LoginUser | None:
        credentials = req.authorization
        if not machine_request() or credentials is None or credentials.type != "basic":
            return None
        result = check_password(
            credentials.username or "", credentials.password or "", "basic auth"
        )
        if result is None or result.account is None:
            return None
        return LoginUser(result.account)

    @manager.unauthorized_handler
    def _unauthorized() -> Any:
        if request.path.startswith(MACHINE_PATHS):
            retry_after = g.get("retry_after")
            if retry_after:
                return (
                    {"error": f"too many failed logins from here: try again in {retry_after} s"},
                    429,
                    {"Retry-After": str(retry_after)},
                )
            return (
                {"error": "authentication required"},
                401,
                {"WWW-Authenticate": 'Basic realm="radassist"'},
            )
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))

    return manager


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Only admins; others get 403."""

    @functools.wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an absolute or scheme-relative URL (open
    redirect); 400 for one with control characters (a header could be split)."""
    if not target:
        return url_for("dashboard.worklist")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        abort(400)
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
    ):
        return url_for("dashboard.worklist")
    return target


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Any:
    form = LoginForm()
    no_users = user_count(context().db) == 0
    next_page = _safe_next(request.args.get("next"))
    if form.validate_on_submit():
        result = check_password(form.username.data or "", form.password.data or "", "form")
        if result is None:
            flash(
                f"Too many failed logins from this address: try again in {g.retry_after} s.",
                "error",
            )
            page = render_template("login.html", form=form, no_users=no_users)
            return page, 429, {"Retry-After": str(g.retry_after)}
        if result.account is None:
            lockout = _lockout()
            flash(
                "Wrong user name or password (after "
                f"{lockout.max_failures} in a row an account is locked for "
                f"{lockout.minutes:g} minutes).",
                "error",
            )
            return render_template("login.html", form=form, no_users=no_users), 401
        session.clear()  # a fresh session at login: nothing carried over (session fixation)
        token = start_session(
            context().db,
            result.account.id,
            remote_addr(),
            request.headers.get("User-Agent", ""),
        )
        login_user(LoginUser(result.account, token))
        session.permanent = True
        record("login")
        return redirect(next_page)
    return render_template("login.html", form=form, no_users=no_users)


@blueprint.route("/logout", methods=["POST"])
@login_required
def logout() -> Any:
    record("logout")
    if current_user.token:
        end_session(context().db, current_user.token)  # the cookie is worthless from now on
    logout_user()
    session.clear()
    flash("Logged out.", "info")
    return redirect(url_for("auth.login"))


__all__ = ["Role", "admin_required", "blueprint", "init_login", "machine_request", "record"]
