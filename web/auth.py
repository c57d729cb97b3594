"""Login, logout and who may do what. Every page and API route needs a login except the
login page and /healthz; scripts and Prometheus may use HTTP Basic auth instead of a
session (and then need no CSRF token, as no browser cookie is involved)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    flash,
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

from assistant.access.users import Account, audit, authenticate, load_account, user_count
from web.context import context

blueprint = Blueprint("auth", __name__)


class LoginUser(UserMixin):
    """The logged-in account as Flask-Login sees it."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.id = str(account.id)

    @property
    def username(self) -> str:
        return self.account.username

    @property
    def is_admin(self) -> bool:
        return self.account.is_admin


class LoginForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


def remote_addr() -> str:
    return request.remote_addr or ""


def record(action: str, target: str = "", detail: str = "") -> None:
    """An audit row for the current user and request."""
    username = current_user.username if current_user.is_authenticated else ""
    audit(
        context().sessions,
        action,
        username=username,
        target=target,
        remote_addr=remote_addr(),
        detail=detail,
    )


def init_login(app: Any) -> LoginManager:
    manager = LoginManager(app)
    manager.login_view = "auth.login"
    manager.login_message = "Please log in."
    manager.session_protection = "strong"

    @manager.user_loader
    def _load(user_id: str) -> LoginUser | None:
        try:
            account = load_account(context().sessions, int(user_id))
        except ValueError:
            return None
        return LoginUser(account) if account else None

    @manager.request_loader
    def _basic(req: Any) -> LoginUser | None:
        credentials = req.authorization
        if credentials is None or credentials.type != "basic":
            return None
        account = authenticate(
            context().sessions, credentials.username or "", credentials.password or ""
        )
        if account is None:
            audit(
                context().sessions,
                "login_failed",
                username=(credentials.username or "")[:64],
                remote_addr=req.remote_addr or "",
                detail="basic auth",
            )
            return None
        return LoginUser(account)

    @manager.unauthorized_handler
    def _unauthorized() -> Any:
        if request.path.startswith("/api/") or request.path == "/metrics":
            return (
                {"error": "authentication required"},
                401,
                {"WWW-Authenticate": 'Basic realm="radassist"'},
            )
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))

    return manager


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Only admins; viewers get 403."""

    @functools.wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an absolute or scheme-relative URL (open redirect)."""
    if not target:
        return url_for("dashboard.worklist")
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
    no_users = user_count(context().sessions) == 0
    if form.validate_on_submit():
        account = authenticate(
            context().sessions, form.username.data or "", form.password.data or ""
        )
        if account is None:
            audit(
                context().sessions,
                "login_failed",
                username=(form.username.data or "")[:64],
                remote_addr=remote_addr(),
            )
            flash("Wrong user name or password.", "error")
            return render_template("login.html", form=form, no_users=no_users), 401
        next_page = _safe_next(request.args.get("next"))
        session.clear()  # a fresh session at login: nothing carried over (session fixation)
        login_user(LoginUser(account))
        session.permanent = True
        record("login")
        return redirect(next_page)
    return render_template("login.html", form=form, no_users=no_users)


@blueprint.route("/logout", methods=["POST"])
@login_required
def logout() -> Any:
    record("logout")
    logout_user()
    session.clear()
    flash("Logged out.", "info")
    return redirect(url_for("auth.login"))
