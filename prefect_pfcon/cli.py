"""``prefect-pfcon`` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from prefect_pfcon.jobs_cli import add_jobs_command, jobs
from prefect_pfcon.malloc_arenas import cap_malloc_arenas
from prefect_pfcon.settings import ContainerEnv, PfconSettings, StorageEnv
from prefect_pfcon.state_dir import private_dir
from prefect_pfcon.status_cli import add_status_command, status

DEFAULT_PREFECT_PORT = 4200
# the variables ``up``'s flags override (each flag's ``dest`` is its variable)
OVERRIDDEN = ("PFCON_HOST", "PFCON_PORT", "STOREBASE_MOUNT", "STORAGE_ENV", "CONTAINER_ENV",
              "PFCON_USER", "PFCON_PASSWORD", "SECRET_KEY")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefect-pfcon", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up",
        help="run the embedded default: local Prefect server, pfcon API and runner",
        description="Run the Prefect server (unless PREFECT_API_URL is set), the pfcon API "
        "and an in-process runner in the foreground. Flags override environment variables.",
    )
    up.add_argument("--host", dest="PFCON_HOST", help="API bind address (PFCON_HOST, default 127.0.0.1)")
    up.add_argument("--port", dest="PFCON_PORT", type=int, help="API port (PFCON_PORT, default 30006)")
    up.add_argument("--storebase", type=Path, dest="STOREBASE_MOUNT",
                    help="storeBase directory (STOREBASE_MOUNT, default /var/local/storeBase)")
    up.add_argument("--storage", dest="STORAGE_ENV", choices=get_args(StorageEnv),
                    help="storage mode (STORAGE_ENV, default fslink)")
    up.add_argument("--compute", dest="CONTAINER_ENV", choices=get_args(ContainerEnv),
                    help="compute backend (CONTAINER_ENV, default docker)")
    up.add_argument("--user", dest="PFCON_USER", help="API user (PFCON_USER, default pfcon)")
    up.add_argument("--password", dest="PFCON_PASSWORD", help="API password (PFCON_PASSWORD, default pfcon1234)")
    up.add_argument("--secret-key", dest="SECRET_KEY",
                    help="JWT secret (SECRET_KEY; default: generated once and kept in the state dir)")
    up.add_argument("--prefect-port", type=int, default=DEFAULT_PREFECT_PORT,
                    help="port of the local Prefect server when one is started (default 4200)")
    add_jobs_command(commands)
    add_status_command(commands)
    return parser


def _prepare_prefect_env(prefect_port: int, settings: PfconSettings) -> str | None:
    """Point Prefect at the local server unless ``PREFECT_API_URL`` names one; its UI URL.

    The local server requires its credentials (``resolved_prefect_auth_string``), which every
    Prefect client of this process and the server itself take from the environment, and
    grants CORS to its own UI only. An external server's credentials are the operator's
    ``PREFECT_API_AUTH_STRING``. Must run before Prefect is imported: Prefect reads its
    settings at import.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_UI_API_URL", f"http://127.0.0.1:{prefect_port}/api")
    # SQLite: writers wait up to a minute for the lock instead of failing with "database is
    # locked", which the server answers 503 and the client retries only after a backoff
    os.environ.setdefault("PREFECT_API_DATABASE_TIMEOUT", "60")
    if os.environ.get("PREFECT_API_URL"):
        return None
    ui_url = f"http://127.0.0.1:{prefect_port}"
    os.environ["PREFECT_API_URL"] = f"{ui_url}/api"
    # finished jobs are kept PFCON_HISTORY_DAYS: Prefect's vacuum deletes older flow runs
    os.environ.setdefault("PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED", "events,flow_runs")
    os.environ.setdefault("PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD",
                          str(int(settings.service.history_days * 86400)))
    auth_string = settings.service.resolved_prefect_auth_string()
    os.environ["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
    os.environ["PREFECT_API_AUTH_STRING"] = auth_string
    os.environ.setdefault("PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS", ui_url)
    # concurrency leases kept in files under PREFECT_HOME (Prefect keeps them in memory by
    # default): a restart then keeps the slots of running plugins (and their expiry)
    os.environ.setdefault("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE",
                          "prefect.server.concurrency.lease_storage.filesystem")
    if os.environ.get("PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED", "").lower() not in ("1", "true"):
        # the local server takes no CSRF token: without this each new client asks for one first
        os.environ.setdefault("PREFECT_CLIENT_CSRF_SUPPORT_ENABLED", "false")
    # the server's SQLite database holds block secrets and the key they are encrypted with
    private_dir(Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser())
    from prefect_pfcon.embedded.unused_ca import unused_ca_file

    os.environ.setdefault("PREFECT_API_SSL_CERT_FILE", str(unused_ca_file(settings.service.state_dir)))
    return ui_url


def configuration_errors(error: ValidationError) -> str:
    """A settings validation error in one line: ``VARIABLE: reason; ...``."""
    parts = []
    for detail in error.errors():
        where = ".".join(str(part) for part in detail["loc"])
        reason = detail["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {reason}" if where else reason)
    return "; ".join(parts)


def _interrupt(signum: int, frame: object) -> None:
    """Turn SIGTERM into KeyboardInterrupt, so the service stops in order (``serve``)."""
    raise KeyboardInterrupt


def up(args: argparse.Namespace) -> None:
    """Run the embedded default in the foreground; exit once it has stopped.

    Flow runs still in progress at a stop are left to the next start, which reschedules
    them: the process exits without waiting for their threads.
    """
    overrides: dict[str, Any] = {
        variable: value for variable in OVERRIDDEN if (value := getattr(args, variable)) is not None
    }
    try:
        settings = PfconSettings(**overrides)
    except ValidationError as exc:
        raise SystemExit(f"prefect-pfcon: invalid configuration: {configuration_errors(exc)}") from None
    try:
        private_dir(settings.service.state_dir)
    except PermissionError as error:
        sys.exit(f"prefect-pfcon: {error}")
    cap_malloc_arenas()
    ui_url = _prepare_prefect_env(args.prefect_port, settings)
    from prefect_pfcon.embedded.serve import serve
    from prefect_pfcon.embedded.local_server import LocalPrefectServer, PrefectServerError

    server = None
    if ui_url is not None:
        server = LocalPrefectServer(args.prefect_port)
    shown_ui = ui_url or os.environ["PREFECT_API_URL"].removesuffix("/api")
    if ui_url is not None:
        shown_ui += f" (log in with the auth string {settings.service.prefect_auth_source()})"
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        asyncio.run(serve(settings, server, shown_ui))
    except KeyboardInterrupt:
        pass
    except PrefectServerError as error:
        sys.exit(f"prefect-pfcon: {error}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``prefect-pfcon`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "up":
        up(args)
    elif args.command == "jobs":
        jobs(args)
    elif args.command == "status":
        status(args)


if __name__ == "__main__":
    main()
