"""``serve``: HTTP for real CVMFS clients and Stratum 1s, and a read-only web view (``--ui``)."""

from __future__ import annotations

import errno
import ipaddress
from pathlib import Path

import click

from ..errors import PublisherError
from .common import State, default_repo, pass_state
from .output import stderr


@click.command()
@click.option("--repo", "-r", "repos", multiple=True, metavar="NAME|DIR",
              callback=default_repo,
              help="Repository to serve (repeatable): a configured name, or a directory "
                   "together with --fqrn [default: $CVMFS_PUBLISHER_REPO, else "
                   "default_repository in the config].")
@click.option("--fqrn", metavar="NAME", help="Name to serve a repository directory under.")
@click.option("--bind", "--host", "host", default="127.0.0.1", show_default=True,
              metavar="ADDRESS", help="Address to listen on: loopback by default, so only "
              "this machine can connect; 0.0.0.0 (or ::) for every interface.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--quiet", "-q", is_flag=True, help="No access log (one line per request on "
              "stderr).")
@click.option("--ui", is_flag=True, help="Also serve a read-only web view of the repositories "
              "at http://HOST:PORT/ (JSON under /api/; see docs/web.md).")
@click.option("--key", "keys", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              metavar="FILE.pub", help="With --ui: master public key to verify a repository "
              "directory with (repeatable; configured repositories know theirs).")
@pass_state
def serve(state: State, repos: tuple[str, ...], fqrn: str | None, host: str, port: int,
          quiet: bool, ui: bool, keys: tuple[Path, ...]) -> None:
    """Serve repositories at http://HOST:PORT/cvmfs/<name>/ until interrupted.

    Ctrl-C or SIGTERM stop it cleanly (exit 0).
    """
    from ..http_server import make_server

    served, readers = {}, {}
    for spec in repos:
        repository = state.repository(spec, keys, fqrn)
        if not repository.fqrn:
            raise click.UsageError(f"give --fqrn to serve the directory {spec}")
        served[repository.fqrn] = repository.storage
        readers[repository.fqrn] = repository
    view = None
    if ui:
        from ..web import WebApp

        view = WebApp(readers)
    try:
        server = make_server(served, host, port, ui=view,
                             access_log=None if quiet else stderr.print)
    except OSError as exc:
        raise PublisherError(_bind_failure(host, port, exc)) from None
    bound_host, bound_port = server.server_address[:2]
    for name in served:
        stderr.print(f"serving {name} at http://{_url_host(bound_host)}:{bound_port}"
                     f"/cvmfs/{name}/", markup=False)
    if view is not None:
        stderr.print(f"web view at http://{_url_host(bound_host)}:{bound_port}/", markup=False)
        if not ipaddress.ip_address(bound_host).is_loopback:
            stderr.print(f"note: the web view has no authentication and anyone who can reach "
                         f"{bound_host} sees every served repository", markup=False)
    from . import Terminated

    try:
        server.serve_forever()
    except KeyboardInterrupt:
        stderr.print("stopped (interrupted)")
    except Terminated:
        stderr.print("stopped (SIGTERM)")
    finally:
        server.server_close()


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    where = f"{_url_host(host)}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (f"cannot serve on {where}: the port is already in use (another 'serve' or "
                "web server?); choose another with --port")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot serve on {where}: permission denied (ports below 1024 need root)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot serve on {where}: {host} is not an address of this machine (--bind)"
    return f"cannot serve on {where}: {exc.strerror or exc}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


COMMANDS = (serve,)
