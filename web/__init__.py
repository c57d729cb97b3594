"""The dashboard, JSON API and operations endpoints: a Flask app built by `create_app`.

Imports flow one way: web -> assistant -> dicom_node. No torch here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect

from assistant.access.audit import AuditTrail
from assistant.access.throttle import AddressThrottle
from assistant.access.users import VerifiedCredentials
from assistant.db import Database
from assistant.findings.wording import millilitres, percent
from assistant.intake.stow import StowIntake
from assistant.settings import Settings
from web.context import WebContext, load_or_create_secret

#: Content Security Policy: our own scripts, styles and images only, no inline script.
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class _NoCookieForMachines(SecureCookieSessionInterface):
    """Requests authenticated by their header get no session cookie (and ignore one)."""

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        from web.auth import machine_request

        if machine_request():
            return
        super().save_session(app, session, response)


def create_app(settings: Settings, db: Database, stow: StowIntake | None = None) -> Flask:
    """The web app over a migrated database (the caller owns it). With `stow`,
    it also receives instances by STOW-RS."""
    from web import api, auth, dashboard, dicomweb, models, ops, reading, users_admin, viewer

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=load_or_create_secret(settings.secret_key_path),
        SESSION_COOKIE_NAME="radassist_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.web.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=settings.web.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.web.session_hours),
        # CSRF is checked in before_request below: every session-made state change.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=1 << 20,
    )
    app.extensions["radassist"] = WebContext(
        settings,
        db,
        AuditTrail(db),
        AddressThrottle(
            settings.auth.address_max_failures, window_seconds=60 * settings.auth.lockout_minutes
        ),
        VerifiedCredentials(),
    )
    if stow is not None:
        app.extensions["radassist.stow"] = stow
    csrf = CSRFProtect(app)
    auth.init_login(app)

    app.session_interface = _NoCookieForMachines()

    @app.before_request
    def _csrf() -> Any:
        if auth.machine_request():
            # Authenticated by its header alone (the cookie is ignored): no CSRF token,
            # but a browser sending Basic credentials it cached, from another site's
            # page, is refused.
            if request.method not in ("GET", "HEAD", "OPTIONS") and auth.cross_site():
                return {"error": "refused: a cross-site request with credentials"}, 403
            return None
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        if request.blueprint == "dicomweb":  # writes take header credentials only
            return None
        csrf.protect()  # every state change made with a session, whatever its headers
        return None

    @app.after_request
    def _headers(response: Any) -> Any:
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.endpoint not in ("static",):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError) -> Any:
        if request.path.startswith("/api/"):
            return {"error": f"CSRF check failed: {error.description}"}, 400
        return render_template("error.html", code=400, message=error.description), 400

    for code, message in ((403, "You may not do that."), (404, "Not found."), (413, "Too large.")):
        app.register_error_handler(code, _error_page(code, message))

    app.register_blueprint(auth.blueprint)
    app.register_blueprint(dashboard.blueprint)
    app.register_blueprint(api.blueprint, url_prefix="/api/v1")
    app.register_blueprint(ops.blueprint)
    app.register_blueprint(dicomweb.blueprint, url_prefix="/dicomweb")
    app.register_blueprint(viewer.blueprint)
    app.register_blueprint(users_admin.blueprint)
    app.register_blueprint(models.blueprint)
    app.jinja_env.globals["node_ae_title"] = settings.node.ae_title
    app.add_template_filter(dicom_date)
    app.add_template_filter(percent)
    app.add_template_filter(millilitres)
    app.add_template_filter(reading.location_text, "location")
    app.add_template_filter(reading.abc2_text, "abc2")
    app.add_template_filter(reading.thickness_text, "thickness")
    app.add_template_filter(reading.shows_thickness, "shows_thickness")
    app.jinja_env.globals["missing"] = reading.MISSING
    app.jinja_env.globals["worklist_characters"] = reading.WORKLIST_CHARACTERS
    return app


def dicom_date(value: str | None) -> str:
    """A DICOM date (DA, YYYYMMDD) written for people, YYYY-MM-DD; anything else as it
    is (a PACS may send a malformed or empty one, which we show, not hide)."""
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value or ""


def _error_page(code: int, message: str) -> Any:
    def handler(_error: Exception) -> Any:
        if request.path.startswith(("/api/", "/dicomweb/")):
            return {"error": message}, code
        return render_template("error.html", code=code, message=message), code

    return handler
