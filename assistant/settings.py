"""The node's settings: one frozen object built once at start-up and passed down.

Sources, later ones winning: built-in defaults (everything embedded under ``./var``),
a TOML file (``--config FILE``, else ``$RADASSIST_CONFIG``, else ``./radassist.toml`` if
present), then ``RADASSIST_<SECTION>__<KEY>`` environment variables. A bad value stops
start-up with a :class:`SettingsError` naming the key, never a silent fallback.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ENV_PREFIX = "RADASSIST_"
CONFIG_ENV = "RADASSIST_CONFIG"
DEFAULT_CONFIG_NAME = "radassist.toml"

_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # default character repertoire, no "\"


class SettingsError(ValueError):
    """A setting is missing, unknown or has a value the node cannot use."""


def _check_ae_title(key: str, value: str) -> None:
    if not _AE_TITLE.match(value) or not value.strip():
        raise SettingsError(
            f"{key}: {value!r} is not an AE title (1-16 printable characters, no backslash,"
            " not all spaces)"
        )


def _check_port(key: str, value: int, *, allow_any: bool = False) -> None:
    low = 0 if allow_any else 1
    if not low <= value < 65536:
        raise SettingsError(f"{key}: {value} is not a TCP port ({low}-65535)")


#: The most receiver processes a node runs (node.processes).
MAX_RECEIVER_PROCESSES = 64


def _cpu_cores() -> int:
    """CPU cores this process may run on (a container's share, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class NodeSettings:
    """The DICOM side: who we are, where we listen, who may talk to us."""

    ae_title: str = "RADASSIST"
    host: str = "0.0.0.0"
    port: int = 11112
    allowed_callers: tuple[str, ...] = ()
    allowed_addresses: tuple[str, ...] = ()
    max_pdu_size: int = 4 * 1024 * 1024
    #: Associations served at once, over all receiver processes; more are refused
    #: (transient) until one ends.
    max_associations: int = 32
    #: Receiver processes sharing the port (SO_REUSEPORT; the kernel spreads
    #: associations over them), so concurrent associations use every core; 0: one per
    #: CPU core this process may use. 1: the SCP runs in the node's own process.
    processes: int = 0
    #: Connections one peer address may hold at once (0: no limit), so that one host,
    #: broken or hostile, cannot take every slot; more are closed at once.
    max_associations_per_address: int = 16
    #: Refuse an association whose called AE title is not node.ae_title.
    check_called_ae: bool = True
    #: Seconds a peer may stay silent mid-association before it is dropped.
    network_timeout_seconds: float = 30.0
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""

    def __post_init__(self) -> None:
        _check_ae_title("node.ae_title", self.ae_title)
        _check_port("node.port", self.port, allow_any=True)  # 0: any free port
        for caller in self.allowed_callers:
            _check_ae_title("node.allowed_callers", caller)
        for address in self.allowed_addresses:
            try:
                ipaddress.ip_network(address, strict=False)
            except ValueError:
                raise SettingsError(
                    f"node.allowed_addresses: {address!r} is not an IP address or network"
                ) from None
        if self.max_associations < 1:
            raise SettingsError("node.max_associations: must be at least 1")
        if not 0 <= self.processes <= MAX_RECEIVER_PROCESSES:
            raise SettingsError(
                f"node.processes: must be 0 (one per CPU core) to {MAX_RECEIVER_PROCESSES}"
            )
        if self.processes == 0:  # frozen: resolved once, here
            object.__setattr__(self, "processes", min(_cpu_cores(), MAX_RECEIVER_PROCESSES))
        if self.max_associations_per_address < 0:
            raise SettingsError("node.max_associations_per_address: must be 0 (no limit) or more")
        if self.network_timeout_seconds <= 0:
            raise SettingsError("node.network_timeout_seconds: must be positive")
        if self.max_pdu_size != 0 and not 4096 <= self.max_pdu_size <= 2**32 - 1:
            raise SettingsError("node.max_pdu_size: must be 0 (unlimited) or 4096..4294967295")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError("node.tls_cert and node.tls_key: set both or neither")


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    #: Signs session cookies; created (0600) on first start. Default <data_dir>/secret_key.
    secret_key_file: str = ""
    #: Send cookies only over HTTPS: set it when a TLS proxy fronts the dashboard.
    secure_cookies: bool = False
    #: A login lasts at most this long, used or not.
    session_hours: int = 12
    #: A login not used for this long ends.
    session_idle_minutes: int = 60
    #: Worker threads of the waitress server.
    threads: int = 8
    #: The address of the one reverse proxy in front (e.g. "127.0.0.1" for nginx on the
    #: same machine): its X-Forwarded-For/-Proto/-Host/-Port are then believed, so the
    #: audit trail and the login throttle see each client's own address. Empty: none.
    trusted_proxy: str = ""
    #: The dashboard's address as readers reach it (behind a proxy, its https:// name):
    #: the links in notifications. Empty: http://<web.host>:<web.port>.
    public_url: str = ""

    def __post_init__(self) -> None:
        _check_port("web.port", self.port, allow_any=True)  # 0: any free port
        if self.public_url:
            _check_url("web.public_url", self.public_url)
        if self.session_hours < 1:
            raise SettingsError("web.session_hours must be at least 1")
        if self.session_idle_minutes < 1:
            raise SettingsError("web.session_idle_minutes must be at least 1")
        if self.threads < 1:
            raise SettingsError("web.threads must be at least 1")
        if self.trusted_proxy:
            try:
                ipaddress.ip_address(self.trusted_proxy)
            except ValueError:
                raise SettingsError(
                    f"web.trusted_proxy: {self.trusted_proxy!r} is not an IP address"
                ) from None


@dataclass(frozen=True)
class AuthSettings:
    """Wrong passwords: an account is locked after `max_failures` in a row, for
    `lockout_minutes`; an address with more than `address_max_failures` failures within
    `lockout_minutes` waits twice as long after each further one (up to
    `lockout_minutes`), and no password is checked while it waits."""

    max_failures: int = 10
    lockout_minutes: float = 15.0
    address_max_failures: int = 20

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise SettingsError("auth.max_failures must be at least 1")
        if self.lockout_minutes <= 0:
            raise SettingsError("auth.lockout_minutes must be positive")
        if self.address_max_failures < 1:
            raise SettingsError("auth.address_max_failures must be at least 1")


#: What storage.on_changed_duplicate may say (see StorageSettings).
CHANGED_DUPLICATE_POLICIES = ("replace", "keep-first", "reject")


@dataclass(frozen=True)
class StorageSettings:
    data_dir: Path = Path("var")
    #: An instance sent again with its SOP Instance UID but other content: "replace" (the
    #: sender's correction is analysed; the earlier file is kept beside it), "keep-first"
    #: (the first copy stays in use; the changed one is kept beside it) or "reject" (a
    #: failure status; nothing written).
    on_changed_duplicate: str = "replace"

    def __post_init__(self) -> None:
        if self.on_changed_duplicate not in CHANGED_DUPLICATE_POLICIES:
            raise SettingsError(
                "storage.on_changed_duplicate must be one of "
                + ", ".join(repr(p) for p in CHANGED_DUPLICATE_POLICIES)
            )

    @property
    def instances_dir(self) -> Path:
        return self.data_dir / "instances"

    @property
    def results_dir(self) -> Path:
        """Where the SR, KOS and SEG objects we write are kept."""
        return self.data_dir / "results"


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = ""  # empty: sqlite:///<data_dir>/radassist.db

    def __post_init__(self) -> None:
        if self.url:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                make_url(self.url)
            except ArgumentError as exc:
                raise SettingsError(f"database.url: {exc}") from exc


@dataclass(frozen=True)
class QueueSettings:
    redis_url: str = ""
    workers: int = 1

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise SettingsError(f"queue.workers: {self.workers} must be at least 1")


@dataclass(frozen=True)
class CompletionSettings:
    """When a series counts as complete (see assistant/intake/completion.py)."""

    quiet_seconds: float = 10.0
    check_interval_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.quiet_seconds <= 0:
            raise SettingsError(f"completion.quiet_seconds: {self.quiet_seconds} must be > 0")
        if self.check_interval_seconds <= 0:
            raise SettingsError("completion.check_interval_seconds: must be > 0")


@dataclass(frozen=True)
class SelectionSettings:
    """Which complete series are analysed (see assistant/intake/selection.py).

    Patterns are shell-style (``*HEAD*``), case-insensitive; an empty list admits all.
    """

    modalities: tuple[str, ...] = ("CT",)
    min_slices: int = 10
    #: Only stacks whose slice normal is within 45 degrees of the feet-head axis.
    axial_only: bool = True
    series_description_patterns: tuple[str, ...] = ()
    body_part_patterns: tuple[str, ...] = ()
    calling_ae_titles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.min_slices < 1:
            raise SettingsError(f"selection.min_slices: {self.min_slices} must be at least 1")


@dataclass(frozen=True)
class DeliverySettings:
    """How results are retried towards destinations (see assistant/delivery/outbox.py)."""

    max_attempts: int = 10
    #: The wait after the first failure; it doubles after each one, up to the maximum.
    backoff_seconds: float = 5.0
    max_backoff_seconds: float = 600.0
    #: How often the outbox looks for due deliveries.
    poll_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise SettingsError("delivery.max_attempts: must be at least 1")
        if self.backoff_seconds <= 0 or self.max_backoff_seconds < self.backoff_seconds:
            raise SettingsError(
                "delivery.backoff_seconds: must be > 0 and not above delivery.max_backoff_seconds"
            )
        if self.poll_seconds <= 0:
            raise SettingsError("delivery.poll_seconds: must be > 0")


#: The demo model trained by `make bundled-model` and shipped in the package.
BUNDLED_MODEL_DIR = Path(__file__).resolve().parent / "analysis" / "model" / "bundled"


@dataclass(frozen=True)
class ModelSettings:
    path: str = ""  # empty: the bundled demo model

    @property
    def folder(self) -> Path:
        return Path(self.path) if self.path else BUNDLED_MODEL_DIR


@dataclass(frozen=True)
class DicomwebSettings:
    token: str = ""
    max_body_mb: int = 2048

    def __post_init__(self) -> None:
        if self.max_body_mb < 1:
            raise SettingsError("dicomweb.max_body_mb: must be at least 1")


@dataclass(frozen=True)
class Destination:
    """A peer that receives our results.

    DICOM objects (SR, KOS, SEG) go to ``dimse`` (a DICOM SCP) and ``dicomweb`` (a STOW-RS
    root) destinations, every one of them. Notifications of a finding go to ``webhook``
    (a signed JSON POST), ``hl7`` (an HL7 v2.5.1 ORU^R01 over MLLP) and ``fhir`` (a FHIR
    R4 transaction Bundle) destinations, when the destination's rule says so
    (`send_on` and the conditions after it; see assistant/delivery/rules.py)."""

    name: str
    kind: Literal["dimse", "dicomweb", "webhook", "hl7", "fhir"] = "dimse"
    host: str = ""
    port: int = 104
    ae_title: str = ""
    url: str = ""
    #: DICOMweb and FHIR: sent as "Authorization: Bearer <token>" when set.
    token: str = ""
    #: DIMSE only: DICOM TLS to this peer; `tls_ca` the certificate(s) to trust (empty:
    #: the system's), `tls_cert`/`tls_key` our client certificate when it asks for one.
    tls: bool = False
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    #: Webhook only: the HMAC-SHA256 key that signs each body, given here or (better) in
    #: a file that only the node can read.
    secret: str = ""
    secret_file: str = ""
    #: HL7 only: MSH-3/4 (us) and MSH-5/6 (the receiver).
    sending_application: str = "RADASSIST"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    #: Webhook, HL7 and FHIR: how long to wait for the peer's answer (seconds).
    timeout_seconds: float = 10.0
    #: Notifications: which results are sent: "positive" (default) or "all" (negatives
    #: too); then every condition set here must hold (0 or empty: no condition).
    send_on: Literal["positive", "all"] = "positive"
    min_probability: float = 0.0
    min_volume_ml: float = 0.0
    min_midline_shift_mm: float = 0.0
    modalities: tuple[str, ...] = ()
    calling_ae_titles: tuple[str, ...] = ()
    body_part_patterns: tuple[str, ...] = ()

    @property
    def notifies(self) -> bool:
        """Whether this destination takes notifications (not DICOM objects)."""
        return self.kind in NOTIFICATION_KINDS

    def __post_init__(self) -> None:
        key = f"destinations[{self.name}]"
        if not self.name:
            raise SettingsError("destinations: every destination needs a name")
        if self.kind == "dimse":
            if not self.host:
                raise SettingsError(f"{key}.host: required for kind 'dimse'")
            _check_port(f"{key}.port", self.port)
            _check_ae_title(f"{key}.ae_title", self.ae_title)
        elif self.kind in ("dicomweb", "webhook", "fhir"):
            _check_url(f"{key}.url", self.url)
        elif self.kind == "hl7":
            if not self.host:
                raise SettingsError(f"{key}.host: required for kind 'hl7'")
            _check_port(f"{key}.port", self.port)
            if not self.sending_application:
                raise SettingsError(f"{key}.sending_application: required for kind 'hl7'")
        else:
            raise SettingsError(
                f"{key}.kind: {self.kind!r} is not one of 'dimse', 'dicomweb', 'webhook', "
                "'hl7', 'fhir'"
            )
        if self.secret and self.secret_file:
            raise SettingsError(f"{key}.secret: give secret or secret_file, not both")
        if self.kind == "webhook" and not (self.secret or self.secret_file):
            raise SettingsError(
                f"{key}.secret_file: a webhook needs a secret to sign with (secret_file, or secret)"
            )
        if self.timeout_seconds <= 0:
            raise SettingsError(f"{key}.timeout_seconds: must be > 0")
        if not 0.0 <= self.min_probability <= 1.0:
            raise SettingsError(f"{key}.min_probability: {self.min_probability} is not in [0, 1]")
        for name in ("min_volume_ml", "min_midline_shift_mm"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{key}.{name}: must be >= 0")
        rules = (
            "send_on",
            "min_probability",
            "min_volume_ml",
            "min_midline_shift_mm",
            "modalities",
            "calling_ae_titles",
            "body_part_patterns",
        )
        if not self.notifies:
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            set_here = [name for name in rules if getattr(self, name) != defaults[name]]
            if set_here:
                raise SettingsError(
                    f"{key}.{set_here[0]}: rules are for notification destinations "
                    f"(webhook, hl7, fhir); a {self.kind} destination gets every result"
                )

    def signing_secret(self) -> bytes:
        """The webhook's HMAC key: `secret`, else the contents of `secret_file` (read when
        asked, so a rotated file is used from the next message)."""
        if self.secret:
            return self.secret.encode()
        return Path(self.secret_file).read_bytes().strip()


#: The destination kinds that take notifications of findings, not DICOM objects.
NOTIFICATION_KINDS = ("webhook", "hl7", "fhir")


def _check_url(key: str, value: str) -> None:
    """An http(s) URL with a host (and a port, when given, that is a TCP port)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise SettingsError(f"{key}: {value!r} is not a usable URL ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{key}: {value!r} is not an http(s) URL with a host")
    if port == 0:
        raise SettingsError(f"{key}: {value!r} has port 0")


@dataclass(frozen=True)
class Settings:
    node: NodeSettings = field(default_factory=NodeSettings)
    web: WebSettings = field(default_factory=WebSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    completion: CompletionSettings = field(default_factory=CompletionSettings)
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    dicomweb: DicomwebSettings = field(default_factory=DicomwebSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    destinations: tuple[Destination, ...] = ()

    def __post_init__(self) -> None:
        names = [d.name for d in self.destinations]
        if len(names) != len(set(names)):
            raise SettingsError(f"destinations: names must be unique, got {names}")

    @property
    def public_url(self) -> str:
        """The dashboard's base address for links (no trailing slash)."""
        if self.web.public_url:
            return self.web.public_url.rstrip("/")
        host = self.web.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.web.port}"

    @property
    def secret_key_path(self) -> Path:
        """The file holding the dashboard's session-signing key."""
        return Path(self.web.secret_key_file or self.storage.data_dir / "secret_key")

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL; the embedded SQLite file under the data folder by default."""
        return self.database.url or f"sqlite:///{self.storage.data_dir / 'radassist.db'}"


_SECTIONS: dict[str, type] = {
    name: hint for name, hint in typing.get_type_hints(Settings).items() if name != "destinations"
}


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Convert a TOML or environment value to the annotated type, or raise naming the key."""
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        }:
            return value.lower() in {"1", "true", "yes", "on"}
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is Path:
        if isinstance(value, str) and value:
            return Path(value)
    elif origin is Literal:
        if value in typing.get_args(hint):
            return value
        raise SettingsError(f"{key}: {value!r} is not one of {list(typing.get_args(hint))}")
    elif origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v]
        if isinstance(value, list):
            return tuple(_coerce(key, item, v) for v in value)
    else:  # pragma: no cover - a new annotation without a converter is a programming error
        raise TypeError(f"no converter for {key}: {hint}")
    name = getattr(hint, "__name__", str(hint))
    raise SettingsError(f"{key}: expected {name}, got {value!r}")


def _build(cls: type, key: str, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(
            f"{key}: unknown setting(s) {', '.join(unknown)}; known: {sorted(known)}"
        )
    kwargs = {name: _coerce(f"{key}.{name}", hints[name], v) for name, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise SettingsError(f"{key}: {exc}") from exc


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        if rest == "destinations":
            try:
                overrides["destinations"] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise SettingsError(f"{name}: not a JSON list of destinations: {exc}") from exc
            continue
        section, sep, key = rest.partition("__")
        if not sep or not key:
            raise SettingsError(f"{name}: expected {ENV_PREFIX}<SECTION>__<KEY>")
        overrides.setdefault(section, {})[key] = value
    return overrides


def resolve_config_path(
    config: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> Path | None:
    """The TOML file to read: the flag, else $RADASSIST_CONFIG, else ./radassist.toml if present."""
    if config:
        return Path(config)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.is_file() else None


def load_settings(
    config: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the one Settings object from the config file and the environment."""
    environ = os.environ if environ is None else environ
    path = resolve_config_path(config, environ)
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SettingsError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path}: {exc}") from exc
        _paths_relative_to(raw, path.resolve().parent)
    for section, values in _env_overrides(environ).items():
        if isinstance(values, dict) and isinstance(raw.get(section), dict):
            raw[section] = {**raw[section], **values}
        else:
            raw[section] = values

    unknown = sorted(set(raw) - set(_SECTIONS) - {"destinations"})
    if unknown:
        raise SettingsError(f"unknown section(s) {', '.join(unknown)}; known: {sorted(_SECTIONS)}")
    kwargs: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        values = raw.get(section, {})
        if not isinstance(values, dict):
            raise SettingsError(f"{section}: expected a table of settings")
        kwargs[section] = _build(cls, section, values)
    destinations = raw.get("destinations", [])
    if not isinstance(destinations, list) or not all(isinstance(d, dict) for d in destinations):
        raise SettingsError("destinations: expected an array of tables ([[destinations]])")
    kwargs["destinations"] = tuple(
        _build(Destination, f"destinations[{i}]", d) for i, d in enumerate(destinations)
    )
    return with_absolute_paths(Settings(**kwargs), Path.cwd())


#: The settings that name files or folders, by section (database.url when SQLite).
_PATH_KEYS = {
    "storage": ("data_dir",),
    "web": ("secret_key_file",),
    "model": ("path",),
    "node": ("tls_cert", "tls_key", "tls_ca"),
}
_DESTINATION_PATH_KEYS = ("tls_ca", "tls_cert", "tls_key", "secret_file")


def _paths_relative_to(raw: dict[str, Any], base: Path) -> None:
    """Make the relative paths a config file names absolute against its folder, in place:
    `data_dir = "var"` in /etc/radassist/radassist.toml means /etc/radassist/var wherever
    the node is started from. (Paths from the environment or the defaults are made
    absolute against the working folder afterwards, in with_absolute_paths.)"""
    for section, keys in _PATH_KEYS.items():
        values = raw.get(section)
        if isinstance(values, dict):
            for key in keys:
                if isinstance(values.get(key), str):
                    values[key] = _absolute(values[key], base)
    database = raw.get("database")
    if isinstance(database, dict) and isinstance(database.get("url"), str):
        database["url"] = _absolute_sqlite(database["url"], base)
    destinations = raw.get("destinations")
    if isinstance(destinations, list):
        for destination in destinations:
            if isinstance(destination, dict):
                for key in _DESTINATION_PATH_KEYS:
                    if isinstance(destination.get(key), str):
                        destination[key] = _absolute(destination[key], base)


def _absolute(value: str, base: Path) -> str:
    return str(base / value) if value and not Path(value).is_absolute() else value


def _absolute_sqlite(url: str, base: Path) -> str:
    """sqlite:///relative.db → sqlite:////base/relative.db; other URLs unchanged."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix + ":memory:":
        return url
    return prefix + _absolute(url[len(prefix) :], base)


def with_absolute_paths(settings: Settings, base: Path) -> Settings:
    """`settings` with every file and folder made absolute against `base` (the working
    folder at start-up), once: nothing downstream resolves a path again, so a process
    that changes its folder, or a URL built from a path, never points elsewhere."""
    node = settings.node
    return dataclasses.replace(
        settings,
        storage=dataclasses.replace(settings.storage, data_dir=base / settings.storage.data_dir),
        web=dataclasses.replace(
            settings.web, secret_key_file=_absolute(settings.web.secret_key_file, base)
        ),
        database=dataclasses.replace(
            settings.database, url=_absolute_sqlite(settings.database.url, base)
        ),
        model=dataclasses.replace(settings.model, path=_absolute(settings.model.path, base)),
        node=dataclasses.replace(
            node,
            tls_cert=_absolute(node.tls_cert, base),
            tls_key=_absolute(node.tls_key, base),
            tls_ca=_absolute(node.tls_ca, base),
        ),
        destinations=tuple(
            dataclasses.replace(
                d,
                tls_ca=_absolute(d.tls_ca, base),
                tls_cert=_absolute(d.tls_cert, base),
                tls_key=_absolute(d.tls_key, base),
                secret_file=_absolute(d.secret_file, base),
            )
            for d in settings.destinations
        ),
    )


def replace(settings: Settings, **sections: Any) -> Settings:
    """A copy with whole sections swapped (tests and the CLI use it; Settings stays frozen)."""
    return dataclasses.replace(settings, **sections)


__all__ = [
    "NOTIFICATION_KINDS",
    "AuthSettings",
    "CompletionSettings",
    "DatabaseSettings",
    "DeliverySettings",
    "Destination",
    "DicomwebSettings",
    "ModelSettings",
    "NodeSettings",
    "QueueSettings",
    "SelectionSettings",
    "Settings",
    "SettingsError",
    "StorageSettings",
    "WebSettings",
    "load_settings",
    "replace",
]
