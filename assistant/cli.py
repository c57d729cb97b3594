"""`radassist`: the command line, and the composition root that wires the pieces together.

Subcommands follow DESIGN.md §5. Each accepts ``--config FILE`` after its name; without
it ``$RADASSIST_CONFIG``, then ``./radassist.toml``, then the embedded defaults.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from assistant import __version__
from assistant.findings.wording import percent
from assistant.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from assistant.analysis.worker import Worker
    from assistant.db import Database
    from assistant.findings import Findings
    from assistant.intake.completion import CompletedSeries, SeriesCompletion
    from assistant.intake.ingest import Ingest
    from assistant.intake.processes import ReceiverProcesses
    from assistant.intake.receiver import Receiver
    from assistant.intake.submit import JobSubmitter
    from assistant.registry import Registry
    from assistant.storage import InstanceStore
    from dicom_node import StorageSCP
    from web.server import WebServer

LOGGER = logging.getLogger("assistant")


def _configure_logging(verbose: bool, process: str = "") -> None:
    """Log lines to stderr; `process` names a receiver process in each of its lines."""
    label = f"[{process}] " if process else ""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"%(asctime)s %(levelname)-7s {label}%(name)s: %(message)s",
        stream=sys.stderr,
    )
    # pynetdicom logs identifiers at INFO; ours say what matters without PHI.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("highdicom").setLevel(logging.WARNING)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


# -- composition: the one place that wires database, queue, store, SCP and workers --------
# Each piece takes what it uses in its constructor; these functions build them from
# Settings in the order they depend on each other. Imports are local so that each
# subcommand loads only its own side (the SCP and web processes never load torch).


def open_database(settings: Settings) -> Database:
    """The process's Database handle, refusing a database not at the current schema."""
    from assistant.db.migrate import migrated_database

    return migrated_database(settings.database_url)


def build_intake(
    settings: Settings,
    db: Database,
    on_complete: Callable[[CompletedSeries], None] | None = None,
) -> tuple[InstanceStore, SeriesCompletion, Ingest, JobSubmitter | None]:
    """The store, ingest and completion that take instances in (C-STORE or STOW-RS).

    A complete series becomes a job for each live or shadow model its routes choose
    (queued), or a skipped job saying why none reads it, unless `on_complete` is given
    (tests)."""
    from assistant.intake.completion import SeriesCompletion
    from assistant.intake.ingest import Ingest
    from assistant.intake.submit import JobSubmitter
    from assistant.queue import JobQueue, make_huey
    from assistant.registry import Routes
    from assistant.storage import InstanceStore

    submitter = None
    if on_complete is None:
        on_complete = submitter = JobSubmitter(
            db,
            settings.selection,
            register_first_model(settings, db),
            Routes(db),
            JobQueue(make_huey(settings)).enqueue,
        )
    store = InstanceStore(settings.storage.instances_dir)
    completion = SeriesCompletion(db, settings.completion, on_complete=on_complete)
    ingest = Ingest(
        store,
        db,
        settings.storage.data_dir,
        completion,
        on_changed_duplicate=settings.storage.on_changed_duplicate,
    )
    return store, completion, ingest, submitter


def register_first_model(settings: Settings, db: Database) -> Registry:
    """The node's registry; on first start (an empty registry), `model.path` (the bundled
    model by default) is added to it, live. Its card and weights' sha256 are checked; the
    worker's warm-up runs it. Another process adding it at the same moment is fine. A
    route to a model the registry lacks, or has none live or in shadow of, is logged."""
    from assistant.analysis.model.registering import add_model
    from assistant.db import ModelState
    from assistant.registry import Registry, RegistryError, Routes

    registry = Registry(db, settings.storage.data_dir)
    if registry.is_empty():
        folder = settings.model.folder
        try:
            entry = add_model(
                registry,
                folder,
                state=ModelState.LIVE,
                by="radassist (first start)",
                test_run=False,
            )
            LOGGER.info("model %s from %s added to the registry, live", entry.ref, folder)
        except RegistryError:
            if registry.is_empty():
                raise
    elif settings.model.path:
        from assistant.analysis.model.card import read_card

        card = read_card(settings.model.folder)
        if registry.find(card.name, card.version) is None:
            LOGGER.warning(
                "model.path names %s, which is not in the registry: the registry decides "
                "which models run; add it with `radassist model add %s`",
                card.ref,
                settings.model.folder,
            )
    names = {entry.name for entry in registry.models()}
    live = {entry.name for entry in registry.models((ModelState.LIVE, ModelState.SHADOW))}
    for route in Routes(db).all():
        if route.model_name not in names:
            LOGGER.warning(
                "route %s sends series to %s, which is not in the registry: they are skipped",
                route.name,
                route.model_name,
            )
        elif route.model_name not in live:
            LOGGER.warning(
                "route %s sends series to %s, which has no live or shadow version",
                route.name,
                route.model_name,
            )
    return registry


def build_receiver(
    settings: Settings,
    db: Database | None = None,
    on_complete: Callable[[CompletedSeries], None] | None = None,
) -> Receiver:
    """The receiving side: intake behind a storage SCP on the node's port (not started);
    with node.processes > 1, behind that many receiver processes sharing the port
    (`on_complete` then hooks this process's completions only: the quiet period's)."""
    from assistant.intake.processes import ReceiverProcesses
    from assistant.intake.receiver import Receiver

    db = db if db is not None else open_database(settings)
    store, completion, ingest, submitter = build_intake(settings, db, on_complete)
    listener: StorageSCP | ReceiverProcesses = (
        ReceiverProcesses(
            settings,
            serve_receiver_process,
            # What a receiver killed mid-way leaves: a series it completed and never
            # submitted (a corrected copy it swapped in is recorded at the next start).
            recover=(
                (lambda died_at: submitter.submit_unjobbed(completed_before=died_at))
                if submitter is not None
                else None
            ),
        )
        if settings.node.processes > 1
        else build_scp(settings, ingest)
    )
    return Receiver(settings, db, store, ingest, completion, listener, submitter)


def build_scp(
    settings: Settings, ingest: Ingest, *, index: int | None = None, counts: Any = None
) -> StorageSCP:
    """The storage SCP on the node's port, giving instances to `ingest`; `index` and
    `counts`: one receiver process of several (the port shared, node.max_associations
    counted over all of them in `counts`)."""
    from dicom_node import StorageSCP
    from dicom_node.guard import AssociationSlots
    from dicom_node.tls import server_context

    node = settings.node
    slots = AssociationSlots(counts, index, node.max_associations) if index is not None else None
    return StorageSCP(
        ingest,
        ae_title=node.ae_title,
        host=node.host,
        port=node.port,
        allowed_callers=node.allowed_callers,
        max_pdu_size=node.max_pdu_size,
        max_associations=node.max_associations,
        network_timeout=node.network_timeout_seconds,
        allowed_addresses=node.allowed_addresses,
        max_associations_per_address=node.max_associations_per_address,
        check_called_ae=node.check_called_ae,
        ssl_context=server_context(node.tls_cert, node.tls_key, node.tls_ca),
        shared_port=slots is not None,
        slots=slots,
    )


def serve_receiver_process(
    settings: Settings, index: int, port: int, counts: Any, ready: Any, supervisor: int
) -> None:
    """One receiver process of several (node.processes; started by ReceiverProcesses):
    an SCP on the shared `port` with its own database connections, until SIGTERM. It
    dies with its supervisor (even a SIGKILLed one), so no orphan holds the port."""
    import dataclasses

    from assistant.intake.processes import die_with_parent

    die_with_parent(supervisor)
    _configure_logging(False, f"receiver-{index + 1}")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sys.setswitchinterval(0.001)  # as Receiver.start does
    settings = dataclasses.replace(settings, node=dataclasses.replace(settings.node, port=port))
    db = open_database(settings)
    try:
        _store, _completion, ingest, _submitter = build_intake(settings, db)
        scp = build_scp(settings, ingest, index=index, counts=counts)
        scp.start()
        ready.set()
        stop.wait()
        scp.stop()
    finally:
        db.dispose()


def build_worker(settings: Settings, db: Database) -> Worker:
    """The analysis worker and the outbox (not started); models are loaded from the
    registry as jobs name them (and all live and shadow ones when it starts)."""
    from assistant.analysis.model.shelf import ModelShelf
    from assistant.analysis.pipeline import Analysis
    from assistant.analysis.worker import Worker
    from assistant.delivery.outbox import Outbox
    from assistant.delivery.senders import make_senders
    from assistant.queue import JobQueue, make_huey

    outbox = Outbox(
        db,
        settings.destinations,
        settings.delivery,
        settings.storage.data_dir,
        make_senders(settings.node.ae_title),
    )
    analysis = Analysis(settings, db, ModelShelf(register_first_model(settings, db)), outbox)
    queue = JobQueue(make_huey(settings), run_job=analysis.run)
    return Worker(analysis, queue, outbox, threads=settings.queue.workers)


def build_web(settings: Settings, db: Database, ingest: Ingest) -> WebServer:
    """The dashboard, API and DICOMweb server; STOW-RS instances go to `ingest`."""
    from assistant.intake.stow import StowIntake
    from web.server import WebServer

    return WebServer(settings, db, StowIntake(ingest))


def _hint_first_user(db: Database) -> None:
    from assistant.access.users import user_count

    if user_count(db) == 0:
        LOGGER.warning(
            "no dashboard user yet: create the admin with "
            "`radassist user add admin --role admin` (there is no default password)"
        )


@contextmanager
def _running(
    settings: Settings, *, migrate: bool, with_worker: bool, with_web: bool
) -> Iterator[tuple[Receiver, WebServer | None]]:
    """The receiver, and optionally a worker and the web server, started; stopped after."""
    from assistant.db.files import secure_node_files
    from assistant.db.migrate import upgrade

    secure_node_files(settings)  # var/ 0700, database, queue and key 0600 (logs each fix)
    if migrate:
        upgrade(settings.database_url)
    receiver = build_receiver(settings)
    worker = build_worker(settings, receiver.db) if with_worker else None
    web = build_web(settings, receiver.db, receiver.ingest) if with_web else None
    started: list[Receiver | Worker | WebServer] = []
    try:
        # The worker first: a model that fails its warm-up stops the node before the
        # port opens, instead of accepting studies that no job could analyse.
        for part in (worker, receiver, web):
            if part is not None:
                part.start()
                started.append(part)
        yield receiver, web
    finally:
        LOGGER.info("stopping")
        for part in reversed(started):
            part.stop()


def _run_receiver(settings: Settings, *, migrate: bool, with_worker: bool, with_web: bool) -> int:
    with _running(settings, migrate=migrate, with_worker=with_worker, with_web=with_web) as (
        receiver,
        _web,
    ):
        if with_web:
            _hint_first_user(receiver.db)
        _wait_for_signal()
    return 0


def cmd_serve(settings: Settings, _args: argparse.Namespace) -> int:
    return _run_receiver(settings, migrate=True, with_worker=True, with_web=True)


def cmd_scp(settings: Settings, _args: argparse.Namespace) -> int:
    return _run_receiver(settings, migrate=False, with_worker=False, with_web=False)


def cmd_web(settings: Settings, _args: argparse.Namespace) -> int:
    from assistant.db.files import secure_node_files

    # Intake takes STOW-RS instances; no SCP here (`radassist scp` runs that, and sweeps
    # series that go quiet).
    secure_node_files(settings)
    db = open_database(settings)
    _store, _completion, ingest, _submitter = build_intake(settings, db)
    server = build_web(settings, db, ingest)
    _hint_first_user(db)
    server.start()
    try:
        _wait_for_signal()
    finally:
        LOGGER.info("stopping")
        server.stop()
        db.dispose()
    return 0


def _read_password(args: argparse.Namespace) -> str:
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise SystemExit("radassist: the passwords differ")
    return first


def cmd_user(settings: Settings, args: argparse.Namespace) -> int:
    import getpass

    from assistant.access.audit import AuditTrail
    from assistant.access.users import (
        UserError,
        add_user,
        delete_user,
        list_users,
        reset_password,
        set_active,
        set_role,
    )

    db = open_database(settings)
    audit = AuditTrail(db)  # not started: each row is written at once
    who = f"cli:{getpass.getuser()}"
    action = args.user_command
    try:
        if action == "list":
            print(f"{'user':20} {'role':9} {'state':9} {'last login':17} failures  locked until")
            for user in list_users(db):
                state = "active" if user.active else "disabled"
                last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "-"
                locked = f"{user.locked_until:%Y-%m-%d %H:%M}" if user.locked_until else "-"
                print(
                    f"{user.username:20} {user.role:9} {state:9} {last:17} "
                    f"{user.failed_logins:8}  {locked}"
                )
            return 0
        if action == "add":
            account = add_user(db, args.name, _read_password(args), args.role)
            message = f"user {account.username} ({account.role.value}) created"
            detail = f"role {account.role.value}"
        elif action == "disable":
            set_active(db, args.name, False)
            message, detail = f"user {args.name} disabled; its sessions ended", ""
        elif action == "enable":
            set_active(db, args.name, True)
            message, detail = f"user {args.name} enabled (and unlocked)", ""
        elif action == "set-role":
            set_role(db, args.name, args.role)
            message = f"user {args.name} is now {args.role}; its sessions ended"
            detail = f"role {args.role}"
        elif action == "reset-password":
            reset_password(db, args.name, _read_password(args))
            message, detail = f"password of {args.name} changed; its sessions ended", ""
        else:
            delete_user(db, args.name)
            message, detail = f"user {args.name} deleted", ""
        audit.record(
            f"user_{action.replace('-', '_')}",
            username=who,
            target=args.name,
            remote_addr="local",
            detail=detail,
        )
    except UserError as exc:
        print(f"radassist: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    print(message)
    return 0


def cmd_viewer(settings: Settings, args: argparse.Namespace) -> int:
    from web.viewer_install import (
        OHIF_PACKAGE,
        OHIF_VERSION,
        ViewerInstallError,
        install_viewer,
    )

    try:
        folder = install_viewer(settings.storage.data_dir, force=args.force)
    except ViewerInstallError as exc:
        print(f"radassist: the viewer is not installed: {exc}", file=sys.stderr)
        return 1
    print(f"{OHIF_PACKAGE}@{OHIF_VERSION} installed in {folder}; it is served at /viewer")
    return 0


def cmd_worker(settings: Settings, _args: argparse.Namespace) -> int:
    from assistant.db.files import secure_node_files

    secure_node_files(settings)
    db = open_database(settings)
    worker = build_worker(settings, db)
    worker.start()
    try:
        _wait_for_signal()
    finally:
        LOGGER.info("stopping")
        worker.stop()
        db.dispose()
    return 0


def cmd_jobs(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from assistant.db import Job, Series
    from assistant.intake.submit import retry_job
    from assistant.queue import JobQueue, make_huey

    db = open_database(settings)
    try:
        if args.jobs_command == "run":
            return _run_jobs(settings, db, args.series, args.model)
        if args.jobs_command == "retry":
            if not retry_job(db, args.job_id, JobQueue(make_huey(settings)).enqueue):
                print(f"job {args.job_id} is not failed: nothing to retry", file=sys.stderr)
                return 1
            print(f"job {args.job_id} queued again")
            return 0
        with db.sessions() as session:
            query = select(Job, Series.series_instance_uid).join(Series).order_by(Job.id.desc())
            if args.state:
                query = query.where(Job.state == args.state)
            for job, series_uid in session.execute(query.limit(args.limit)):
                detail = job.summary.splitlines()[0] if job.summary else job.reason
                model = f"{job.model_name}:{job.model_version}" if job.model_name else "-"
                shadow = " (shadow)" if job.shadow else ""
                print(f"{job.id:6} {job.state.value:8} {series_uid}  {model}{shadow}  {detail}")
        return 0
    finally:
        db.dispose()


def _run_jobs(settings: Settings, db: Database, series_uids: list[str], ref: str) -> int:
    """`jobs run`: queue the model's job on each series; 1 when any series was not."""
    from sqlalchemy import select

    from assistant.db import ModelState, Series
    from assistant.intake.submit import JobSubmitter, SubmitRefused
    from assistant.queue import JobQueue, make_huey
    from assistant.registry import RegistryError, Routes

    registry = register_first_model(settings, db)
    model = registry.get(ref)
    if model.state is ModelState.RETIRED:
        raise RegistryError(f"{model.ref} is retired: make it live or shadow first")
    submitter = JobSubmitter(
        db, settings.selection, registry, Routes(db), JobQueue(make_huey(settings)).enqueue
    )
    failed = 0
    for uid in series_uids:
        with db.sessions() as session:
            pk = session.scalar(select(Series.id).where(Series.series_instance_uid == uid))
        if pk is None:
            print(f"{uid}: no such series on this node", file=sys.stderr)
            failed += 1
            continue
        try:
            queued = submitter.submit(pk, model)
        except SubmitRefused as exc:
            print(str(exc), file=sys.stderr)
            failed += 1
            continue
        shadow = " (shadow: nothing is sent)" if model.state is ModelState.SHADOW else ""
        if queued:
            print(f"{uid}: job {queued[0]} queued for {model.ref}{shadow}")
        else:
            print(f"{uid}: {model.ref} already has a job for these instances")
    return 1 if failed else 0


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.db.migrate import downgrade, upgrade

    if args.db_command == "upgrade":
        upgrade(settings.database_url, args.revision)
        print(f"database at {args.revision}: {settings.database_url}")
    else:
        downgrade(settings.database_url, args.revision)
        print(f"database downgraded to {args.revision}: {settings.database_url}")
    return 0


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    from dicom_node import send_files

    results = send_files(
        args.paths,
        host=args.host,
        port=args.port,
        called_ae=args.aec,
        calling_ae=args.aet or settings.node.ae_title,
    )
    for result in results:
        status = f"0x{result.status:04X}" if result.status is not None else "-"
        detail = f"  {result.detail}" if result.detail else ""
        print(f"{result.outcome:8} {status:7} {result.path}{detail}")
    counts = {
        outcome: sum(r.outcome == outcome for r in results)
        for outcome in ("sent", "warning", "skipped", "failed")
    }
    print(", ".join(f"{n} {outcome}" for outcome, n in counts.items()), file=sys.stderr)
    if not results:
        print("no files to send", file=sys.stderr)
        return 1
    return 1 if counts["failed"] else 0


def _demo_login(settings: Settings, db: Database) -> tuple[str, str]:
    """The demo's admin login: made once with a random password kept (0600) under the data
    folder, so every demo run can print it. There is never a default password."""
    import contextlib
    import os
    import secrets

    from assistant.access.users import UserError, add_user

    remembered = settings.storage.data_dir / "demo-login.txt"
    if remembered.is_file():
        name, password = remembered.read_text().split("\n", 1)
        # The database may be newer than the file (deleted to start afresh); usually the
        # user is there already.
        with contextlib.suppress(UserError):
            add_user(db, name, password.strip(), "admin")
        return name, password.strip()
    while True:  # random, so it meets the policy but for a one-in-a-lot chance: try again
        password = secrets.token_urlsafe(12)
        try:
            add_user(db, "demo", password, "admin")
            break
        except UserError as exc:
            if "exists already" in str(exc):
                raise

    fd = os.open(remembered, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"demo\n{password}\n")
    return "demo", password


def cmd_fetch(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.intake.fetch import FetchError, fetch

    try:
        fetched = fetch(
            settings,
            args.source,
            study_uid=args.study or "",
            patient_id=args.patient_id or "",
            accession_number=args.accession or "",
        )
    except FetchError as exc:
        print(f"radassist: {exc}", file=sys.stderr)
        return 1
    for item in fetched:
        outcome = item.outcome
        print(
            f"{item.study.study_instance_uid}  {item.study.accession_number or '-'}  "
            f"{outcome.completed} sent, {outcome.failed} failed (status 0x{outcome.status:04X})"
        )
    return 0 if all(item.outcome.ok for item in fetched) else 1


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.training.demo import write_demo_head
    from dicom_node import send_files

    with _running(settings, migrate=True, with_worker=True, with_web=True) as (receiver, web):
        assert web is not None
        login = _demo_login(settings, receiver.db)
        with tempfile.TemporaryDirectory() as scratch:
            if args.study:
                series = Path(args.study)
            else:
                series = Path(scratch)
                write_demo_head(series)
            study_uid = _study_uid(series)
            results = send_files(
                [series],
                host="127.0.0.1",
                port=receiver.scp.port,
                called_ae=settings.node.ae_title,
                calling_ae="DEMO",
            )
        sent = sum(not r.failed for r in results)
        pages, broken = _checked_pages(settings, web.url, login, study_uid)
        print(
            f"\nDemo study sent: {sent}/{len(results)} instances from "
            f"{'a synthetic head CT with a lesion' if not args.study else series}.\n"
            f"Log in as {login[0]!r} with password {login[1]!r}.\n"
            f"{pages}"
            f"DICOM node {settings.node.ae_title} listens on port {receiver.scp.port}; "
            f"send more with: radassist send PATH --host 127.0.0.1 --port {receiver.scp.port} "
            f"--aec {settings.node.ae_title}\nPress Ctrl-C to stop.",
            flush=True,
        )
        if args.exit_after_send:
            return 0 if sent == len(results) and not broken else 1
        _wait_for_signal()
    return 0


def _study_uid(series: Path) -> str:
    from pydicom import dcmread

    for path in sorted(p for p in series.rglob("*") if p.is_file()):
        try:
            return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)
        except Exception:  # not DICOM (a DIRFILE, a README): look further
            continue
    return ""


def _checked_pages(
    settings: Settings, url: str, login: tuple[str, str], study_uid: str
) -> tuple[str, bool]:
    """The lines for the pages the demo offers, each requested first (logged in as the
    demo user): an address is printed only when it answers, else what is wrong with it.
    Also True when any page is broken."""
    from web.selfcheck import check_pages
    from web.viewer_install import is_installed

    installed = is_installed(settings.storage.data_dir)
    lines = []
    broken = False
    for check in check_pages(url, login, study_uid, installed):
        if check.ok:
            if check.what != "Viewer settings":  # checked, not a page to open
                lines.append(f"{check.what}: {check.url}")
        else:
            broken = True
            lines.append(f"{check.what}: NOT WORKING, {check.url} {check.problem}")
    if not installed:
        lines.append("Image viewer: not installed (make viewer; needs Node.js and npm)")
    return "".join(f"{line}\n" for line in lines), broken


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from assistant.cli_models import RegistryOnDemand, resolve_model
    from assistant.training.metrics import finite_or_null
    from assistant.training.run import Recipe, train_model

    command = shlex.join(["radassist", *args.argv])
    init = None
    if args.init:  # a model folder, or NAME:VERSION in the registry
        registry = RegistryOnDemand(settings)
        try:
            init, _ = resolve_model(args.init, registry)
        finally:
            registry.close()
    recipe = Recipe(
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        init=init,
        augment=args.augment,
        acgan_steps=args.acgan_steps,
        learning_rate=args.learning_rate,
        replay=args.replay,
    )
    report = None
    if args.cv is not None:
        from assistant.training.crossval import cross_validate, report_lines

        report = cross_validate(
            args.dataset, args.cv, recipe, Path(args.out), progress=sys.stderr.isatty()
        )
        if not args.json:
            print("\n".join(report_lines(report)))
    card = train_model(
        args.dataset,
        Path(args.out),
        recipe,
        command=command,
        progress=sys.stderr.isatty(),
        name=args.name,
        version=args.model_version,
    )
    if report is not None:
        from assistant.training.crossval import record_in_card

        card = record_in_card(Path(args.out), report)
    val = card.metrics["val"]
    if args.json:
        summary = {
            "model": args.out,
            "threshold": card.threshold,
            "best_epoch": card.training["best_epoch"],
            "val": val,
            **({"cv": report} if report is not None else {}),
        }
        print(json.dumps(finite_or_null(summary), allow_nan=False))
        return 0
    print(
        f"model written to {args.out}: val AUC {val['auc']}, accuracy {val['accuracy']}, "
        f"threshold {card.threshold:.4f} (best epoch {card.training['best_epoch']})"
        + (f"; cross-validation in {Path(args.out) / 'cv'}" if report is not None else "")
    )
    return 0


def cmd_evaluate(_settings: Settings, args: argparse.Namespace) -> int:
    import json

    from assistant.training.metrics import finite_or_null

    if args.cv is not None:  # the figures of a training recipe, not of these fixed weights
        from assistant.training.crossval import evaluate_recipe, report_lines

        report = evaluate_recipe(
            Path(args.model),
            args.dataset,
            args.cv,
            epochs=args.epochs,
            seed=args.seed,
            device=args.device,
            out=Path(args.out) if args.out else None,
            resamples=args.bootstrap,
            progress=sys.stderr.isatty(),
        )
        if args.json:
            print(json.dumps(finite_or_null(report), allow_nan=False))
        else:
            print(f"{report['model']}: the figures of its training recipe, not its weights")
            print("\n".join(report_lines(report)))
        return 0
    from assistant.training.run import evaluate_model

    roc = Path(args.roc) if args.roc else Path(args.model) / f"roc-{args.split}.png"
    metrics = evaluate_model(
        Path(args.model),
        args.dataset,
        args.split,
        roc_png=roc,
        resamples=args.bootstrap,
        predictions_csv=Path(args.predictions) if args.predictions else None,
    )
    if args.json:
        print(json.dumps(finite_or_null(metrics), allow_nan=False))
        return 0
    print(
        f"{metrics['model']} on {metrics['dataset']} ({metrics['split']}, n={metrics['n']}, "
        f"{metrics['positives']} positive)"
    )
    for key in (
        "auc",
        "accuracy",
        "sensitivity",
        "specificity",
        "f1",
        "balanced_accuracy",
        "threshold",
        "brier",
        "ece",
        "slice_auc",
        "dice",
        "jaccard",
    ):
        if key in metrics:
            # evaluate_model puts {name: [low, high]} under "ci95".
            low_high = cast(dict[str, list[float]], metrics.get("ci95", {})).get(key)
            interval = f"  (95% CI {low_high[0]:.4f}-{low_high[1]:.4f})" if low_high else ""
            print(f"  {key:<18} {metrics[key]:<7}{interval}")
    if "ci95" in metrics:
        print(f"  (intervals: {metrics['bootstrap_resamples']} stratified bootstrap resamples)")
    print(f"  ROC curve          {roc}")
    if args.predictions:
        print(f"  predictions        {args.predictions}")
    return 0


def cmd_predict(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from assistant.analysis.imaging import UnreadableSeries
    from assistant.analysis.inference import predict_series
    from assistant.analysis.model.folder import load_model

    model_dir = Path(args.model or settings.model.path or _bundled_model())
    try:
        prediction = predict_series(load_model(model_dir), Path(args.series))
    except UnreadableSeries as exc:
        print(f"radassist: cannot read {args.series}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(prediction.to_dict()))
        return 0
    print("\n".join(prediction_lines(prediction)))
    return 0


def prediction_lines(prediction: Findings) -> list[str]:
    """What `predict` prints for people: the verdict against the threshold, the
    impression (the line the dashboard and the API give), the reading notes, then each
    lesion's line, numbered as `--json` lists them (from 1)."""
    verdict = "POSITIVE" if prediction.positive else "negative"
    return [
        f"{verdict}: study probability {percent(prediction.study_probability)} "
        f"(threshold {percent(prediction.threshold)})",
        f"Impression: {prediction.impression()}",
        *prediction.notes,
        *(f"  {n}. {lesion.summary()}" for n, lesion in enumerate(prediction.lesions, 1)),
    ]


def _bundled_model() -> Path:
    from assistant.settings import BUNDLED_MODEL_DIR

    return BUNDLED_MODEL_DIR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radassist", description="An AI node for radiology that sits beside a PACS."
    )
    parser.add_argument("--version", action="version", version=f"radassist {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # --config and -v are taken after the command's name and after an action's too
    # (`radassist db upgrade --config FILE`); SUPPRESS keeps an action's parser from
    # overwriting what was given before the action.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="TOML settings file (default: $RADASSIST_CONFIG, then ./radassist.toml)",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text, parents=[common])

    def action(
        actions: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
    ) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=help_text, description=help_text, parents=[common])

    command(
        "serve",
        "Migrate the database, then run the DICOM node, series completion, the analysis "
        "worker, the outbox and the dashboard in one process.",
    ).set_defaults(func=cmd_serve)
    command(
        "scp",
        "Run the DICOM node (C-ECHO, C-STORE) and series completion alone; complete series "
        "are queued for workers.",
    ).set_defaults(func=cmd_scp)
    command(
        "worker", "Run queued analyses and send their results (scale out with more of these)."
    ).set_defaults(func=cmd_worker)
    command("web", "Run the dashboard, JSON API and /metrics alone (waitress).").set_defaults(
        func=cmd_web
    )

    user = command("user", "Dashboard users (every change is audited).")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = action(user_commands, "add", "Create a user (asks for the password twice).")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=["admin", "uploader", "viewer"])
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from one line of stdin"
    )
    action(user_commands, "list", "Users with their role, state, last login and lockout.")
    for name, help_text in (
        ("disable", "Disable a user: it cannot log in, and its sessions end."),
        ("enable", "Enable a disabled or locked-out user again."),
        ("delete", "Delete a user and its sessions (its audit rows stay)."),
    ):
        action(user_commands, name, help_text).add_argument("name", metavar="NAME")
    role = action(user_commands, "set-role", "Give a user another role; its sessions end.")
    role.add_argument("name", metavar="NAME")
    role.add_argument("--role", required=True, choices=["admin", "uploader", "viewer"])
    reset = action(
        user_commands, "reset-password", "Set a new password (asks twice); its sessions end."
    )
    reset.add_argument("name", metavar="NAME")
    reset.add_argument(
        "--password-stdin", action="store_true", help="read the password from one line of stdin"
    )
    user.set_defaults(func=cmd_user)

    viewer = command("viewer", "The OHIF image viewer served by the web app at /viewer.")
    viewer_commands = viewer.add_subparsers(dest="viewer_command", required=True, metavar="ACTION")
    viewer_install = action(
        viewer_commands,
        "install",
        "Fetch the pinned @ohif/app from the npm registry into the data folder "
        "(needs Node.js and npm).",
    )
    viewer_install.add_argument("--force", action="store_true", help="install again")
    viewer.set_defaults(func=cmd_viewer)

    jobs = command("jobs", "List analysis jobs, retry a failed one, or run a model again.")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    listing = action(jobs_commands, "list", "The newest jobs, newest first.")
    listing.add_argument("--state", choices=["queued", "running", "done", "skipped", "failed"])
    listing.add_argument("--limit", type=int, default=50)
    retry = action(jobs_commands, "retry", "Queue a failed job again.")
    retry.add_argument("job_id", type=int, metavar="JOB_ID")
    run = action(
        jobs_commands,
        "run",
        "Have a model read stored series again, whatever the routes say (a new version, "
        "or a shadow model on past studies); its results supersede only that model's.",
    )
    run.add_argument("series", nargs="+", metavar="SERIES_UID")
    run.add_argument("--model", required=True, metavar="NAME[:VERSION]")
    jobs.set_defaults(func=cmd_jobs)

    db = command("db", "Database migrations.")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = action(db_commands, "upgrade", "Apply migrations up to REVISION (default head).")
    up.add_argument("revision", nargs="?", default="head")
    down = action(db_commands, "downgrade", "Revert migrations down to REVISION (e.g. base).")
    down.add_argument("revision")
    db.set_defaults(func=cmd_db)

    send = command("send", "C-STORE DICOM files or folders to a peer; exits 1 if any file fails.")
    send.add_argument(
        "paths", nargs="+", metavar="PATH", help="files or folders (searched recursively)"
    )
    send.add_argument("--host", required=True)
    send.add_argument("--port", required=True, type=int)
    send.add_argument("--aec", required=True, metavar="AE", help="called AE title (the peer's)")
    send.add_argument("--aet", metavar="AE", help="calling AE title (default: node.ae_title)")
    send.set_defaults(func=cmd_send)

    train = command(
        "train",
        "Train a CNN-RNN; every choice is made on the validation split "
        "(--cv K: cross-validate first, for honest figures on a small dataset).",
    )
    train.add_argument(
        "--dataset",
        required=True,
        metavar="SPEC",
        help="synthetic[:N[,positive=F,size=PX,slices=S,lesions=MIN-MAX,density=MIN-MAX,mask=intracranial]]"
        " | medmnist:PATH.npz | dicom:DIR:LABELS.csv",
    )
    train.add_argument("--out", required=True, metavar="MODEL_DIR")
    train.add_argument("--epochs", type=int, help="default: 30 medmnist, 30 synthetic, 20 dicom")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    train.add_argument(
        "--augment",
        default="weights",
        choices=["weights", "none", "acgan"],
        help="how the rarer class gets its weight: class-weighted loss (default), nothing, "
        "or ACGAN-generated study features for a refitted study head",
    )
    train.add_argument(
        "--acgan-steps",
        type=int,
        metavar="N",
        help="generator updates of the ACGAN with --augment acgan (default 1500)",
    )
    train.add_argument(
        "--init",
        metavar="MODEL",
        help="start from this model's weights (fine-tuning, e.g. the live model on your "
        "reviewed series): NAME:VERSION in the registry or a model folder; its input "
        "channels, image size and windows must match the dataset",
    )
    train.add_argument(
        "--learning-rate",
        type=float,
        metavar="LR",
        help="the optimiser's step size (default: 7e-4 synthetic, 2e-3 otherwise; 0.3 times "
        "that with --init, so a fine-tune keeps what the model knew)",
    )
    train.add_argument(
        "--name", help="the model's name in its card (default: radassist-hyperdense)"
    )
    train.add_argument(
        "--replay",
        metavar="SPEC",
        help="a second dataset whose train and val splits join SPEC's (read alike): "
        "fine-tune on reviewed series without forgetting what the model learnt from, "
        "e.g. --replay synthetic:300,size=128,mask=intracranial",
    )
    train.add_argument(
        "--version",
        dest="model_version",
        help="the model's version in its card (default: this package's version); the "
        "registry takes each name and version once",
    )
    train.add_argument(
        "--cv",
        type=int,
        metavar="K",
        help="first cross-validate: K patient-grouped folds, each trained as this command "
        "would (epoch and threshold chosen inside its training folds) and tested on its "
        "own patients; per-fold and pooled figures go to MODEL_DIR/cv/ and the card's "
        "metrics['cv']; then the model is trained as usual",
    )
    train.add_argument(
        "--json", action="store_true", help="print one JSON object (with --cv: the report)"
    )
    train.set_defaults(func=cmd_train)

    evaluate = command(
        "evaluate",
        "Metrics of a model on one split, at the threshold in its card "
        "(--cv K: of its training recipe, re-trained per patient-grouped fold).",
    )
    evaluate.add_argument("--model", required=True, metavar="MODEL_DIR")
    evaluate.add_argument("--dataset", required=True, metavar="SPEC")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument(
        "--roc",
        metavar="PNG",
        help="where to write the ROC curve (default: MODEL_DIR/roc-SPLIT.png)",
    )
    evaluate.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="resamples behind each metric's 95%% confidence interval (0: none; default 1000)",
    )
    evaluate.add_argument(
        "--predictions",
        metavar="CSV",
        help="also write each study's label, probability and call to this CSV",
    )
    evaluate.add_argument(
        "--cv",
        type=int,
        metavar="K",
        help="the honest figures of the model's training recipe, not of its fixed weights: "
        "K patient-grouped folds, each fine-tuned from MODEL_DIR (as train --init, at its "
        "image size and windows; epoch and threshold chosen inside the training folds) "
        "and tested on its own patients; --split is then not used",
    )
    evaluate.add_argument(
        "--epochs", type=int, help="with --cv: epochs per fold (default: as train)"
    )
    evaluate.add_argument("--seed", type=int, default=0, help="with --cv: folds and training")
    evaluate.add_argument(
        "--device", default="cpu", choices=["cpu", "cuda"], help="with --cv: where to train"
    )
    evaluate.add_argument(
        "--out",
        metavar="DIR",
        help="with --cv: keep DIR/cv/fold-K/ and DIR/cv/report.json (default: a temporary "
        "folder, removed)",
    )
    evaluate.set_defaults(func=cmd_evaluate)

    predict = command("predict", "Run a model over one CT series folder.")
    predict.add_argument("series", metavar="SERIES_DIR")
    predict.add_argument(
        "--model", metavar="MODEL_DIR", help="default: model.path, else the bundled model"
    )
    predict.add_argument("--json", action="store_true", help="print one JSON object")
    predict.set_defaults(func=cmd_predict)

    fetch = command(
        "fetch",
        "Have a configured PACS send a study to this node (C-FIND, then C-MOVE to node.ae_title); "
        "the running node stores and analyses it.",
    )
    which = fetch.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", metavar="UID", help="Study Instance UID")
    which.add_argument("--patient-id", metavar="ID", help="every study of this patient")
    which.add_argument("--accession", metavar="NUMBER", help="accession number")
    fetch.add_argument(
        "--from", dest="source", required=True, metavar="NAME", help="a [[destinations]] name"
    )
    fetch.set_defaults(func=cmd_fetch)

    from assistant.cli_models import add_parsers as add_model_parsers

    add_model_parsers(command, action)
    from assistant.cli_compare import add_parsers as add_compare_parsers
    from assistant.cli_dataset import add_parsers as add_dataset_parsers

    add_compare_parsers(command, action)
    add_dataset_parsers(command, action)
    demo = command("demo", "What `make demo` runs: start the node and send it a demo study.")
    demo.add_argument(
        "--study",
        metavar="DIR",
        help="series folder to send (default: a synthetic head CT with a lesion)",
    )
    demo.add_argument(
        "--exit-after-send", action="store_true", help="stop once the study is sent (for scripts)"
    )
    demo.set_defaults(func=cmd_demo)
    return parser


#: Errors a user can act on, by the module that defines them and the exit status they
#: get: a message, not a traceback. Looked up only in modules already loaded (a class
#: from a module that never loaded cannot have been raised), so an error in `scp` or
#: `web` loads neither torch nor the training code.
_EXIT_1 = (
    ("builtins", "OSError"),
    ("assistant.db.migrate", "DatabaseNotMigrated"),
    ("assistant.analysis.pipeline", "WarmUpFailed"),
    ("assistant.analysis.imaging.series", "UnreadableSeries"),
)
_EXIT_2 = (
    ("assistant.training.datasets", "DatasetSpecError"),
    ("assistant.analysis.model.card", "ModelCardError"),
    ("assistant.analysis.model.folder", "ModelIntegrityError"),
    ("assistant.analysis.model.registering", "ModelCheckFailed"),
    ("assistant.registry.catalog", "RegistryError"),
    ("assistant.training.trainer", "CheckpointMismatch"),
)


def _is_instance(exc: BaseException, names: tuple[tuple[str, str], ...]) -> bool:
    for module_name, class_name in names:
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module is not None else None
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `radassist` console script."""
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    _configure_logging(getattr(args, "verbose", False))
    try:
        settings = load_settings(getattr(args, "config", None))
    except SettingsError as exc:
        print(f"radassist: bad settings: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(settings, args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if _is_instance(exc, _EXIT_1):
            print(f"radassist: {exc}", file=sys.stderr)
            return 1
        if _is_instance(exc, _EXIT_2):
            print(f"radassist: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
