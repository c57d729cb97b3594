"""The admin's page of users: create, disable, enable (which also lifts a lockout), set
a new password, delete. The same as `radassist user …`, audited the same way."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from assistant.access.users import (
    UserError,
    add_user,
    delete_user,
    list_users,
    reset_password,
    set_active,
)
from assistant.db import Role
from web.auth import admin_required, record
from web.context import context

blueprint = Blueprint("users_admin", __name__)


@blueprint.route("/admin/users")
@admin_required
def users() -> Any:
    record("user_list", coalesce=True)
    return render_template("users.html", users=list_users(context().db), roles=list(Role))


@blueprint.route("/admin/users", methods=["POST"])
@admin_required
def create() -> Any:
    name = request.form.get("username", "")
    try:
        account = add_user(
            context().db, name, request.form.get("password", ""), request.form.get("role", "")
        )
    except UserError as exc:
        flash(f"Not created: {exc}.", "error")
        return redirect(url_for("users_admin.users"))
    record("user_add", target=account.username, detail=f"role {account.role.value}")
    flash(f"User {account.username} ({account.role.value}) created.", "info")
    return redirect(url_for("users_admin.users"))


@blueprint.route("/admin/users/<username>/<change>", methods=["POST"])
@admin_required
def change(username: str, change: str) -> Any:
    db = context().db
    try:
        if change == "disable":
            if username == current_user.username:
                raise UserError("you cannot disable yourself")
            set_active(db, username, False)
            message = f"{username} disabled; its sessions ended."
        elif change == "enable":
            set_active(db, username, True)
            message = f"{username} enabled (and unlocked)."
        elif change == "reset-password":
            reset_password(db, username, request.form.get("password", ""))
            message = f"Password of {username} changed; its sessions ended."
        elif change == "delete":
            if username == current_user.username:
                raise UserError("you cannot delete yourself")
            delete_user(db, username)
            message = f"{username} deleted."
        else:
            return {"error": "unknown change"}, 404
    except UserError as exc:
        flash(f"Not done: {exc}.", "error")
        return redirect(url_for("users_admin.users"))
    record(f"user_{change.replace('-', '_')}", target=username)
    flash(message, "info")
    return redirect(url_for("users_admin.users"))
