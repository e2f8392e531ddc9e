"""The console's list import: an officer uploads the welfare department's list of residents who
may need help (or a list of volunteers), sees what the import would change, and applies it.

The upload is read as it streams (:func:`hosen.console.upload.receive_upload`): at most
:data:`UPLOAD_MAX_BYTES`, its CSRF token checked before the file is kept, the file written to a
private temporary file. The preview is the registry importer's own dry run
(:func:`registry.importer.import_list`, as ``hosen import --dry-run``), rolled back; "apply"
runs the same import on the same file for real, and the file is deleted. A file not applied is
deleted at "cancel", or once :data:`KEPT_FOR` has passed since its upload (at the next visit of
these pages, or when the process ends).

The row report is the importer's: rows numbered as in the spreadsheet, their outcome, the fields
changed and the reasons in the officer's language, beside each row's name and phone as written
(what the people page shows, nothing more). It is kept in this process's memory, for the one who
uploaded it, :data:`KEPT_FOR`; nothing of it is logged. The page, the preview and the apply are
audited (counts only). Officers and administrators of the authority import; coordinators do not.
"""

from __future__ import annotations

import io
import math
import secrets
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, cast

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hosen.commands.registry_lists import DEFAULT_LIST_NAMES
from hosen.console.upload import Upload, UploadRefused, receive_upload
from hosen.report_html import authority_name
from registry import audit
from registry.importer import (
    ImportReport,
    ListKind,
    ListUnreadable,
    Outcome,
    RowLabel,
    RowReport,
    import_list,
    row_labels,
)
from registry.models import Authority
from registry.spreadsheet import SafeWriter
from registry.staff import StaffAction

if TYPE_CHECKING:
    from hosen.console.texts import Words
    from hosen.console.views import Console, Visit

UPLOAD_PATH = "/console/import"
UPLOAD_MAX_BYTES = 20 * 1024 * 1024  # a town's whole list is a few MB
UPLOAD_SECONDS = 300.0
KEPT_FOR = timedelta(minutes=30)
REPORT_ROWS = 200
KINDS: tuple[ListKind, ...] = ("residents", "volunteers")
SHOWN = ("problems", "created", "updated", "unchanged", "skipped", "all")
# Field names of the report (``RowReport.changed``) as the officer reads them; several name one
# thing ("phone_kind" is the phone too).
FIELD_WORDS = {
    "name": "name",
    "phone": "phone",
    "phone_verified": "phone",
    "phone_source": "phone",
    "phone_kind": "phone",
    "phone_to_fix": "phone",
    "address": "address",
    "lat": "address",
    "lon": "address",
    "zone_id": "zone",
    "birth_year": "birth_year",
    "language": "language",
    "channel": "channel",
    "telegram_chat_id": "channel",
    "external_ref": "municipal_id",
    "needs_help": "needs",
    "needs": "needs",
    "is_volunteer": "volunteer",
    "volunteer": "volunteer",
}


@dataclass
class PendingImport:
    """One upload: its file until applied or cancelled, and its row report."""

    token: str
    staff_id: int
    authority_id: int
    kind: ListKind
    list_name: str
    list_version: str
    filename: str
    path: Path | None
    at: datetime  # uploaded, then applied: kept KEPT_FOR after
    report: ImportReport
    labels: dict[int, RowLabel]
    applied: bool = False

    def discard_file(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


def _remove_files(pending: dict[str, PendingImport]) -> None:
    for found in list(pending.values()):
        found.discard_file()


class ImportPages:
    """The upload, its preview and its row report, for one :class:`~hosen.console.views.Console`."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._pending: dict[str, PendingImport] = {}
        self._lock = threading.Lock()
        # Files left when the process ends are removed then.
        weakref.finalize(self, _remove_files, self._pending)

    def routes(self) -> list[BaseRoute]:
        return [
            Route(UPLOAD_PATH, self.upload, methods=["GET", "POST"]),
            Route("/console/import/{token}", self.report, methods=["GET"]),
            Route("/console/import/{token}/apply", self.apply, methods=["POST"]),
            Route("/console/import/{token}/cancel", self.cancel, methods=["POST"]),
            Route("/console/import/{token}/rejected.csv", self.rejected_csv, methods=["GET"]),
        ]

    # --- shared --------------------------------------------------------------------------------

    def _authority(self, db: Session, visit: Visit, raw: str | None, *, audited: bool) -> Authority:
        from hosen.console.views import NotFound

        authorities = visit.authorities or []
        chosen = [a for a in authorities if str(a.id) == raw] if raw else authorities[:1]
        if not chosen:
            raise NotFound
        self.console._allow(db, visit, StaffAction.IMPORT_LIST, chosen[0].id, audited=audited)
        return chosen[0]

    def _sweep(self) -> None:
        """Forget uploads past :data:`KEPT_FOR`, and delete their files."""
        now = self.console.clock()
        with self._lock:
            old = [p for p in self._pending.values() if now - p.at > KEPT_FOR]
            for found in old:
                del self._pending[found.token]
        for found in old:
            found.discard_file()

    def _mine(self, visit: Visit, token: str) -> PendingImport:
        """The reader's own upload (anyone else's, or one forgotten, is not found)."""
        from hosen.console.views import NotFound

        self._sweep()
        with self._lock:
            found = self._pending.get(token)
        if found is None or visit.member is None or found.staff_id != visit.member.id:
            raise NotFound
        if found.authority_id not in self.console._authority_ids(visit):
            raise NotFound
        return found

    def _names(self, db: Session, visit: Visit) -> dict[int, str]:
        """The reader's authorities by their names in the reader's language."""
        profile, language = self.console.ctx.profile, visit.words.language
        return {a.id: authority_name(db, profile, a.id, language) for a in visit.authorities or []}

    def _form_page(
        self,
        request: Request,
        db: Session,
        visit: Visit,
        *,
        status: int = 200,
        error: str | None = None,
        chosen: dict[str, str] | None = None,
    ) -> Response:
        return self.console._html(
            request,
            visit,
            "import.html",
            status,
            authorities=self._names(db, visit),
            kinds=KINDS,
            error=error,
            chosen=chosen or {"kind": "residents", "authority": ""},
            megabytes=UPLOAD_MAX_BYTES // (1024 * 1024),
        )

    # --- the upload ----------------------------------------------------------------------------

    async def upload(self, request: Request) -> Response:
        if request.method == "GET":

            def page(db: Session, visit: Visit) -> Response:
                raw = request.query_params.get("authority")
                self._authority(db, visit, raw, audited=True)
                return self._form_page(request, db, visit)

            return await self.console._page(request, page)
        visit = self.console._visit(request)

        def may_import(db: Session, visit: Visit) -> Response:
            self._authority(db, visit, None, audited=False)
            return Response(status_code=204)

        # Someone not signed in, or not allowed to import, is answered before a byte is read.
        allowed = await self.console._page(request, may_import)
        if allowed.status_code != 204:
            return allowed
        try:
            upload = await receive_upload(
                request,
                limit=UPLOAD_MAX_BYTES,
                seconds=UPLOAD_SECONDS,
                csrf_ok=lambda token: self.console.sessions.csrf_ok(visit.session, token),
            )
        except UploadRefused as refused:
            if refused.key == "console.csrf":
                return self.console._html(request, visit, "message.html", 403, message=refused.key)
            message = visit.words(refused.key, **refused.params)
            status = refused.status

            def refusal(db: Session, visit: Visit) -> Response:
                self._authority(db, visit, None, audited=False)
                return self._form_page(request, db, visit, status=status, error=message)

            return await self.console._page(request, refusal)
        try:
            return await self.console._page(
                request, lambda db, v: self._preview(request, db, v, upload)
            )
        finally:
            upload.discard()  # unless the pending import took the file

    def _preview(self, request: Request, db: Session, visit: Visit, upload: Upload) -> Response:
        assert visit.member is not None and upload.path is not None
        fields = upload.fields
        authority = self._authority(db, visit, fields.get("authority") or None, audited=False)
        kind = cast(ListKind, fields.get("kind")) if fields.get("kind") in KINDS else "residents"
        chosen = {"kind": kind, "authority": str(authority.id)}
        list_name = DEFAULT_LIST_NAMES[kind]
        version = Path(upload.filename).stem[:20] or "console"
        now = self.console.clock()
        try:
            with upload.path.open("rb") as data:
                report = import_list(
                    db,
                    data=data,
                    kind=kind,
                    authority=authority,
                    profile=self.console.ctx.profile,
                    list_name=list_name,
                    list_version=version,
                    region=self.console.ctx.settings.default_region,
                    actor=visit.actor,
                    dry_run=True,
                    now=now,
                )
            with upload.path.open("rb") as data:
                labels = row_labels(data)
        except ListUnreadable as unreadable:
            db.rollback()
            message = unreadable.render(visit.words.language)
            return self._form_page(request, db, visit, status=400, error=message, chosen=chosen)
        finally:
            db.rollback()  # the dry run writes nothing
        self._authority(db, visit, str(authority.id), audited=True)
        audit.record(
            db,
            actor=visit.actor,
            action="import.preview",
            at=now,
            authority_id=authority.id,
            kind=kind,
            list=list_name,
            bytes=upload.size,
            **report.totals,
        )
        kept, upload.path = upload.path, None  # the pending import's now
        token = secrets.token_urlsafe(18)
        pending = PendingImport(
            token=token,
            staff_id=visit.member.id,
            authority_id=authority.id,
            kind=kind,
            list_name=list_name,
            list_version=version,
            filename=upload.filename,
            path=kept,
            at=now,
            report=report,
            labels=labels,
        )
        self._sweep()
        with self._lock:
            self._pending[token] = pending
        return self.console._redirect(request, visit, f"/console/import/{token}")

    # --- the report, apply, cancel -------------------------------------------------------------

    def _report_page(
        self,
        request: Request,
        db: Session,
        visit: Visit,
        pending: PendingImport,
        authority: Authority,
        *,
        shown: str = "problems",
        page: int = 1,
        status: int = 200,
        error: str | None = None,
    ) -> Response:
        from hosen.console.views import _query

        rows = [r for r in pending.report.rows if _shown(r, shown)]
        pages = max(1, math.ceil(len(rows) / REPORT_ROWS))
        page = min(page, pages)
        return self.console._html(
            request,
            visit,
            "import_report.html",
            status,
            pending=pending,
            authority=self._names(db, visit).get(authority.id, authority.name),
            totals=pending.report.totals,
            rows=rows[(page - 1) * REPORT_ROWS : page * REPORT_ROWS],
            shown=shown,
            choices=SHOWN,
            page=page,
            pages=pages,
            total=len(rows),
            reasons=lambda row: _reasons(visit.words, row),
            changed=lambda row: _changed(visit.words, row),
            query=_query,
            error=error,
        )

    async def report(self, request: Request) -> Response:
        token = str(request.path_params["token"])
        params = request.query_params

        def build(db: Session, visit: Visit) -> Response:
            pending = self._mine(visit, token)
            authority = self._authority(db, visit, str(pending.authority_id), audited=True)
            shown = params.get("show", "problems")
            raw = params.get("page", "1")
            return self._report_page(
                request,
                db,
                visit,
                pending,
                authority,
                shown=shown if shown in SHOWN else "problems",
                page=max(1, int(raw)) if raw.isdecimal() else 1,
            )

        return await self.console._page(request, build)

    async def apply(self, request: Request) -> Response:
        form = await self.console._form(request)
        token = str(request.path_params["token"])

        def build(db: Session, visit: Visit) -> Response:
            pending = self._mine(visit, token)
            authority = self._authority(db, visit, str(pending.authority_id), audited=True)
            if form.get("confirm") != "yes" and not pending.applied:
                error = visit.words("console.import.confirm_missing")
                return self._report_page(
                    request, db, visit, pending, authority, status=400, error=error
                )
            with self._lock:  # one apply per upload, however often the button is pressed
                path, pending.path = pending.path, None
            if path is None:
                return self.console._redirect(request, visit, f"/console/import/{token}")
            now = self.console.clock()
            try:
                with path.open("rb") as data:
                    report = import_list(
                        db,
                        data=data,
                        kind=pending.kind,
                        authority=authority,
                        profile=self.console.ctx.profile,
                        list_name=pending.list_name,
                        list_version=pending.list_version,
                        region=self.console.ctx.settings.default_region,
                        actor=visit.actor,
                        now=now,
                    )
                audit.record(
                    db,
                    actor=visit.actor,
                    action="import.apply",
                    at=now,
                    authority_id=authority.id,
                    kind=pending.kind,
                    list=pending.list_name,
                    version=pending.list_version,
                    **report.totals,
                )
                db.commit()  # written before the page says so
            except BaseException:
                pending.path = path  # not imported: it may be applied again
                raise
            path.unlink(missing_ok=True)
            pending.report, pending.applied, pending.at = report, True, now
            return self.console._redirect(request, visit, f"/console/import/{token}")

        return await self.console._page(request, build, form=form)

    async def cancel(self, request: Request) -> Response:
        form = await self.console._form(request)
        token = str(request.path_params["token"])

        def build(db: Session, visit: Visit) -> Response:
            pending = self._mine(visit, token)
            self._authority(db, visit, str(pending.authority_id), audited=False)
            with self._lock:
                self._pending.pop(token, None)
            pending.discard_file()
            return self.console._redirect(request, visit, UPLOAD_PATH)

        return await self.console._page(request, build, form=form)

    async def rejected_csv(self, request: Request) -> Response:
        token = str(request.path_params["token"])

        def build(db: Session, visit: Visit) -> Response:
            pending = self._mine(visit, token)
            self._authority(db, visit, str(pending.authority_id), audited=True)
            words = visit.words
            out = io.StringIO()
            out.write("\ufeff")  # so a spreadsheet reads Hebrew and Arabic as UTF-8
            writer = SafeWriter(out)
            writer.writerow(
                words(f"console.import.{column}") for column in ("row", "name", "phone", "why")
            )
            for row in pending.report.rows:
                if row.outcome != Outcome.SKIPPED:
                    continue
                label = pending.labels.get(row.row, RowLabel("", ""))
                writer.writerow([row.row, label.name, label.phone, _reasons(words, row)])
            name = f"hosen-{pending.kind}-rejected.csv"
            response = Response(
                out.getvalue().encode("utf-8"),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
            return self.console._respond(request, visit, response)

        return await self.console._page(request, build)


# --- what the templates draw -------------------------------------------------------------------


def _shown(row: RowReport, shown: str) -> bool:
    if shown == "all":
        return True
    if shown == "problems":
        return bool(row.problems or row.warnings)
    return row.outcome.value == shown


def _reasons(words: Words, row: RowReport) -> str:
    """Why a row was rejected, and its warnings, in the officer's language."""
    language = words.language
    parts = [problem.render(language) for problem in row.problems]
    parts += [words("lists.warning", message=problem.render(language)) for problem in row.warnings]
    return " ".join(parts)


def _changed(words: Words, row: RowReport) -> str:
    seen: list[str] = []
    for name in row.changed:
        word = FIELD_WORDS.get(name)
        if word is not None and word not in seen:
            seen.append(word)
    return ", ".join(words(f"console.import.field_{word}") for word in seen)
