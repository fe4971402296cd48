"""The clinic console: a server-rendered Starlette app over the ingest database.

Pages (no JavaScript; print CSS): ``/`` Now, ``/patients``, ``/patients/<gateway>/<patient>``
(+ ``/fhir``), ``/hubs``, ``/audit`` (admins).  Every request runs its queries in a worker
thread on a pooled connection; the number of queries and the time spent are sent back in
``X-Queries`` and ``Server-Timing``.  Security (docs/fleet.md, "Clinic console"): signed
server-side sessions, a CSRF token on every form, throttled logins, site-scoped queries
(another site's patient is a 404), and an audit row for every patient view and action.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import queue
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from edge_gateway.cloud.console import auth, views
from edge_gateway.cloud.console.commander import Commander
from edge_gateway.cloud.store import console as store
from edge_gateway.cloud.store import pg
from edge_gateway.logfmt import log

LOG = logging.getLogger("edge_gateway.cloud.console")
SESSION_COOKIE = "egw_session"
LOGIN_COOKIE = "egw_login"


@dataclass
class Settings:
    dsn: str
    stale_after: timedelta = timedelta(hours=24)   # patients without data this long
    silent_after: timedelta = timedelta(hours=2)   # hubs without a message this long
    session_ttl: timedelta = timedelta(hours=12)
    max_failures: int = 5                          # failed logins per user+address …
    failure_window: timedelta = timedelta(minutes=15)  # … within this, then throttled
    loopback: bool = True                          # served on a loopback address
    pool_size: int = 4
    pump_interval_s: float = 2.0
    commander: Commander | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Pool:
    """A few psycopg connections handed to worker threads (a broken one is replaced)."""

    def __init__(self, dsn: str, size: int) -> None:
        self.dsn = dsn
        self.free: queue.LifoQueue[pg.Connection] = queue.LifoQueue()
        self.size = size

    @contextlib.contextmanager
    def db(self) -> Any:
        try:
            conn = self.free.get_nowait()
        except queue.Empty:
            conn = pg.connect(self.dsn)
        ok = False
        try:
            yield store.Db(conn)
            ok = True
        finally:
            if ok and not conn.closed and self.free.qsize() < self.size:
                self.free.put(conn)
            else:
                conn.close()

    def close(self) -> None:
        while True:
            try:
                self.free.get_nowait().close()
            except queue.Empty:
                return


def templates() -> Environment:
    """The Jinja2 environment over the package's templates (works from a wheel)."""
    env = Environment(loader=PackageLoader("edge_gateway.cloud.console", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["ago"] = ago
    env.filters["utc"] = utc
    env.filters["num"] = num
    env.filters["q"] = lambda s: quote(str(s), safe="")
    return env


def static_css() -> bytes:
    return (resources.files("edge_gateway.cloud.console") / "static" / "console.css"
            ).read_bytes()


def _as_dt(t: Any) -> datetime | None:
    if isinstance(t, datetime):
        return t
    if isinstance(t, str):
        from edge_gateway.reading import parse_iso

        return parse_iso(t)
    return None


def ago(t: Any, now: datetime | None = None) -> str:
    """'5 min', '3 h', '2 d' since ``t`` (a datetime or ISO text); '–' for none."""
    dt = _as_dt(t)
    if dt is None:
        return "–"
    s = ((now or datetime.now(UTC)) - dt).total_seconds()
    if s < 0:
        return "in the future"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.0f} h"
    return f"{s / 86400:.0f} d"


def utc(t: Any) -> str:
    dt = _as_dt(t)
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if dt else "–"


def num(v: Any, digits: int = 0) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "–"
    return f"{v:.{digits}f}"


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "?"


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass
class Ctx:
    """One request's user, CSRF token and database handle."""

    db: store.Db
    user: store.User
    csrf: str
    ip: str


class Console:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.pool = Pool(settings.dsn, settings.pool_size)
        self.env = templates()
        self.css = static_css()
        self.secret = b""
        self.wake = asyncio.Event()

    # ------------------------------------------------------------------ plumbing
    def secure_cookie(self, request: Request) -> bool:
        """Secure unless plain HTTP between loopback addresses."""
        if request.url.scheme == "https":
            return True
        return not (self.s.loopback and _is_loopback(_client_ip(request)))

    def render(self, name: str, status: int = 200, **kw: Any) -> HTMLResponse:
        body = self.env.get_template(name).render(
            now=datetime.now(UTC), commands_on=self.s.commander is not None, **kw)
        return HTMLResponse(body, status_code=status,
                            headers={"Cache-Control": "no-store",
                                     "X-Frame-Options": "DENY",
                                     "Content-Security-Policy":
                                         "default-src 'none'; style-src 'self';"
                                         " img-src 'self' data:; form-action 'self';"
                                         " frame-ancestors 'none'"})

    def _authenticate(self, db: store.Db, request: Request) -> tuple[store.User, str] | None:
        token = auth.unsign_value(self.secret, request.cookies.get(SESSION_COOKIE))
        if token is None:
            return None
        return store.session(db, auth.token_hash(token))

    def _unauthenticated(self, request: Request) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": "login required"}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    async def handle(self, request: Request, view: Callable[[Ctx, Request, Any], Response],
                     *, form: bool = False) -> Response:
        """Authenticate, check the CSRF token of a form, run ``view`` in a worker thread."""
        t0 = time.perf_counter()
        data = await request.form() if form else None

        def work() -> tuple[Response, store.Db]:
            with self.pool.db() as db:
                found = self._authenticate(db, request)
                if found is None:
                    return self._unauthenticated(request), db
                user, csrf = found
                sent = data.get("csrf_token") if data is not None else None
                if form and not auth.same_token(str(sent or ""), csrf):
                    store.audit(db, user.name, "csrf.refused", ip=_client_ip(request),
                                detail={"path": request.url.path})
                    return self.render("error.html", 403, user=user, csrf=csrf,
                                       title="Form refused",
                                       message="This form has expired or did not come from"
                                       " this console. Go back, reload the page and try"
                                       " again."), db
                return view(Ctx(db, user, csrf, _client_ip(request)), request, data), db

        resp, db = await run_in_threadpool(work)
        total = (time.perf_counter() - t0) * 1000
        resp.headers["X-Queries"] = str(db.queries)
        resp.headers["Server-Timing"] = (f"db;dur={db.seconds * 1000:.1f},"
                                         f" total;dur={total:.1f}")
        return resp

    # ------------------------------------------------------------------ login
    async def login_form(self, request: Request) -> Response:
        token = auth.new_token()
        resp = self.render("login.html", csrf=token, error=None,
                           next=request.query_params.get("next", "/"))
        resp.set_cookie(LOGIN_COOKIE, auth.sign_value(self.secret, token), httponly=True,
                        samesite="strict", secure=self.secure_cookie(request), max_age=3600)
        return resp

    async def login(self, request: Request) -> Response:
        form = await request.form()
        name = str(form.get("username") or "")[:200]
        password = str(form.get("password") or "")
        nxt = str(form.get("next") or "/")
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"
        cookie = auth.unsign_value(self.secret, request.cookies.get(LOGIN_COOKIE))
        ip = _client_ip(request)
        if not auth.same_token(str(form.get("csrf_token") or ""), cookie):
            return self.render("error.html", 403, title="Form refused",
                               message="The login form has expired. Reload the page and"
                               " try again.")

        def work() -> Response:
            with self.pool.db() as db:
                n, last = store.recent_failures(db, name, ip, self.s.failure_window)
                if n >= self.s.max_failures:
                    store.audit(db, name, "login.throttled", ip=ip)
                    wait = self.s.failure_window - (datetime.now(UTC) - last) if last else \
                        self.s.failure_window
                    minutes = max(1, int(wait.total_seconds() // 60) + 1)
                    return self.render("login.html", 429, csrf=cookie, next=nxt,
                                       error=f"Too many failed logins for this name from"
                                       f" this address. Try again in {minutes} minutes.")
                user = store.get_user(db, name)
                ok = auth.verify_password(user.password_hash if user else None, password)
                if not ok or user is None or user.disabled:
                    store.record_failure(db, name, ip, self.s.failure_window)
                    store.audit(db, name, "login.failed", ip=ip)
                    return self.render("login.html", 401, csrf=cookie, next=nxt,
                                       error="Wrong user name or password.")
                store.clear_failures(db, name, ip)
                token, csrf = auth.new_token(), auth.new_token()
                store.create_session(db, auth.token_hash(token), user.name, csrf,
                                     datetime.now(UTC) + self.s.session_ttl, ip)
                store.audit(db, user.name, "login", ip=ip)
            resp = RedirectResponse(nxt, status_code=303)
            resp.set_cookie(SESSION_COOKIE, auth.sign_value(self.secret, token),
                            httponly=True, samesite="strict",
                            secure=self.secure_cookie(request),
                            max_age=int(self.s.session_ttl.total_seconds()))
            resp.delete_cookie(LOGIN_COOKIE)
            return resp

        return await run_in_threadpool(work)

    def _logout(self, c: Ctx, request: Request, form: Any) -> Response:
        token = auth.unsign_value(self.secret, request.cookies.get(SESSION_COOKIE))
        if token:
            store.end_session(c.db, auth.token_hash(token))
        store.audit(c.db, c.user.name, "logout", ip=c.ip)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE)
        return resp

    # ------------------------------------------------------------------ pages
    def _now(self, c: Ctx, request: Request, form: Any) -> Response:
        data = store.now_page(c.db, c.user.scope, silent_after=self.s.silent_after,
                              stale_after=self.s.stale_after)
        return self.render("now.html", user=c.user, csrf=c.csrf, page="now",
                           stale_hours=self.s.stale_after.total_seconds() / 3600,
                           silent_hours=self.s.silent_after.total_seconds() / 3600, **data)

    def _patients(self, c: Ctx, request: Request, form: Any) -> Response:
        q = request.query_params
        try:
            page = max(1, int(q.get("page", "1")))
        except ValueError:
            page = 1
        search, site = q.get("q", "")[:100], q.get("site", "")[:100]
        data = store.patients_page(c.db, c.user.scope, search=search, site=site, page=page)
        return self.render("patients.html", user=c.user, csrf=c.csrf, page="patients",
                           search=search, site=site, sites=store.sites(c.db, c.user.scope),
                           pageno=page, per_page=50, **data)

    def _find(self, c: Ctx, request: Request) -> dict[str, Any] | None:
        return store.patient(c.db, c.user.scope, request.path_params["gateway"],
                             request.path_params["patient"])

    def _not_found(self, c: Ctx) -> Response:
        return self.render("error.html", 404, user=c.user, csrf=c.csrf, title="Not found",
                           message="There is no such patient, or it is not one of your"
                           " sites.")

    def _patient(self, c: Ctx, request: Request, form: Any, *, notice: str | None = None,
                 status: int = 200) -> Response:
        p = self._find(c, request)
        if p is None:
            return self._not_found(c)
        g, pid = p["gateway"], p["patient"]
        since = datetime.now(UTC) - timedelta(days=35)
        summ = store.summaries(c.db, g, pid, views.KINDS, since)
        alerts = store.patient_alerts(c.db, g, pid)
        cmds = store.patient_commands(c.db, g, pid)
        store.audit(c.db, c.user.name, "patient.view", ip=c.ip, site=p["site"], gateway=g,
                    patient=pid)
        from edge_gateway.alerts.thresholds import SPECS

        latest14 = summ["glucose_14d"][-1] if summ["glucose_14d"] else None
        return self.render(
            "patient.html", status, user=c.user, csrf=c.csrf, page="patients", p=p,
            glucose=views.glucose(latest14, summ["glucose_daily"]),
            meter=summ["glucose_meter_daily"][-14:],
            bp=views.bp_weeks(summ["bp_weekly"][-12:]),
            rhythm=views.rhythm(summ["rhythm_daily"], summ["rhythm"]),
            hrv=views.hrv(summ["hrv_daily"], summ["hrv"]),
            alerts=alerts, commands=cmds, notice=notice,
            threshold_keys=[s for s in SPECS.values() if not s.gateway_only])

    def _fhir(self, c: Ctx, request: Request, form: Any) -> Response:
        from edge_gateway.cloud.console.fhir_export import patient_bundle

        p = self._find(c, request)
        if p is None:
            return self._not_found(c)
        days = 14
        items = store.patient_items(c.db, p["gateway"], p["patient"],
                                    datetime.now(UTC) - timedelta(days=days))
        store.audit(c.db, c.user.name, "patient.export", ip=c.ip, site=p["site"],
                    gateway=p["gateway"], patient=p["patient"],
                    detail={"format": "fhir", "days": days, "items": len(items)})
        body = patient_bundle(p["gateway"], p["patient"], items)
        name = f"{p['gateway']}-{p['patient']}-fhir.json".replace('"', "")
        return Response(json.dumps(body, ensure_ascii=False), media_type="application/fhir+json",
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "Cache-Control": "no-store"})

    def _hubs(self, c: Ctx, request: Request, form: Any) -> Response:
        return self.render("hubs.html", user=c.user, csrf=c.csrf, page="hubs",
                           hubs=store.hubs(c.db, c.user.scope),
                           silent_after=self.s.silent_after)

    def _audit(self, c: Ctx, request: Request, form: Any) -> Response:
        if c.user.role != "admin":
            return self.render("error.html", 404, user=c.user, csrf=c.csrf, title="Not found",
                               message="No such page.")
        return self.render("audit.html", user=c.user, csrf=c.csrf, page="audit",
                           rows=store.audit_rows(c.db))

    # ------------------------------------------------------------------ actions
    def _command(self, c: Ctx, request: Request, form: Any) -> Response:
        p = self._find(c, request)
        if p is None:
            return self._not_found(c)
        action = request.path_params["action"]
        commander = self.s.commander
        if commander is None:
            return self._patient(c, request, form, status=409,
                                 notice="Commands to hubs are off: the console runs without"
                                 " a signing key (--signing-key).")
        from edge_gateway.alerts.thresholds import parse_quantity
        from edge_gateway.commands import CommandRefused
        from edge_gateway.errors import GatewayError

        args: dict[str, Any]
        if action == "ack":
            key = str(form.get("alert_key") or "")
            alert = next((a for a in store.patient_alerts(c.db, p["gateway"], p["patient"])
                          if a["alert_key"] == key), None)
            if alert is None or alert["state"] in ("resolved", "acknowledged"):
                return self._patient(c, request, form, status=409,
                                     notice="That alert is not open any more.")
            if not str(alert["hub_alert_id"] or "").isdigit() or not alert["hub_key"]:
                return self._patient(c, request, form, status=409,
                                     notice="This hub sends its alerts as FHIR; it cannot be"
                                     " acknowledged from here.")
            command, args = "alert.ack", {"alert_id": int(alert["hub_alert_id"]),
                                          "key": str(alert["hub_key"])}
        elif action == "threshold":
            key, value = str(form.get("key") or ""), str(form.get("value") or "").strip()
            try:
                if value:
                    parse_quantity(key, value)
            except GatewayError as err:
                return self._patient(c, request, form, status=400, notice=str(err))
            command, args = (("threshold.set", {"key": key, "value": value}) if value
                             else ("threshold.reset", {"key": key}))
        else:
            return self._not_found(c)
        try:
            cmd = commander.make(c.db, command=command, gateway=p["gateway"], site=p["site"],
                                 patient=p["patient"], args=args, actor=c.user.name)
        except CommandRefused as err:
            return self._patient(c, request, form, status=400, notice=err.reason)
        store.audit(c.db, c.user.name, f"command.{command}", ip=c.ip, site=p["site"],
                    gateway=p["gateway"], patient=p["patient"],
                    detail={"command_id": cmd["id"], "args": args})
        self.wake_pump()
        target = f"/patients/{quote(p['gateway'], safe='')}/{quote(p['patient'], safe='')}"
        return RedirectResponse(f"{target}#commands", status_code=303)

    def wake_pump(self) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(self.wake.set)

    async def pump_loop(self) -> None:
        commander = self.s.commander
        assert commander is not None
        while True:
            try:
                def once() -> dict[str, int]:
                    assert commander is not None
                    with self.pool.db() as db:
                        store.purge_sessions(db)
                        return commander.pump(db)
                await run_in_threadpool(once)
            except Exception as err:  # a database or broker outage: the next round retries
                log(LOG, logging.WARNING, "command.pump_failed", error=str(err)[:200])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.s.pump_interval_s)
            self.wake.clear()

    # ------------------------------------------------------------------ app
    async def css_route(self, request: Request) -> Response:
        return Response(self.css, media_type="text/css",
                        headers={"Cache-Control": "max-age=3600"})

    def app(self) -> Starlette:
        def page(view: Callable[..., Response], form: bool = False) -> Any:
            async def endpoint(request: Request) -> Response:
                return await self.handle(request, view, form=form)
            return endpoint

        routes = [
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", page(self._logout, True), methods=["POST"]),
            Route("/", page(self._now)),
            Route("/patients", page(self._patients)),
            Route("/patients/{gateway}/{patient}", page(self._patient)),
            Route("/patients/{gateway}/{patient}/fhir", page(self._fhir)),
            Route("/patients/{gateway}/{patient}/{action}", page(self._command, True),
                  methods=["POST"]),
            Route("/hubs", page(self._hubs)),
            Route("/audit", page(self._audit)),
            Route("/static/console.css", self.css_route),
        ]

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            def prepare() -> None:
                with self.pool.db() as db:
                    pg.migrate(db.conn)
                    self.secret = store.secret(db)
            await run_in_threadpool(prepare)
            self.loop = asyncio.get_running_loop()
            task = asyncio.create_task(self.pump_loop()) if self.s.commander else None
            log(LOG, logging.INFO, "console.ready",
                commands="on" if self.s.commander else "off")
            try:
                yield
            finally:
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if self.s.commander is not None:
                    self.s.commander.close()
                self.pool.close()

        return Starlette(routes=routes, lifespan=lifespan)


def make_app(settings: Settings) -> Starlette:
    return Console(settings).app()
