"""``serve``: HTTP for real CVMFS clients and Stratum 1s, and a read-only web view (``--ui``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from ..http_server import make_server
from .common import State, pass_state
from .output import stderr


@click.command()
@click.option("--repo", "-r", "repos", multiple=True, required=True, metavar="NAME|DIR",
              help="Repository to serve (repeatable): a configured name, or a directory "
                   "together with --fqrn.")
@click.option("--fqrn", metavar="NAME", help="Name to serve a repository directory under.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--ui", is_flag=True, help="Also serve a read-only web view of the repositories "
              "at http://HOST:PORT/ (JSON under /api/; see docs/web.md).")
@click.option("--key", "keys", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              metavar="FILE.pub", help="With --ui: master public key to verify a repository "
              "directory with (repeatable; configured repositories know theirs).")
@pass_state
def serve(state: State, repos: tuple[str, ...], fqrn: str | None, host: str, port: int,
          ui: bool, keys: tuple[Path, ...]) -> None:
    """Serve repositories at http://HOST:PORT/cvmfs/<name>/ until interrupted."""
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
    server = make_server(served, host, port, ui=view)
    bound_host, bound_port = server.server_address[:2]
    for name in served:
        stderr.print(f"serving {name} at http://{bound_host}:{bound_port}/cvmfs/{name}/",
                     markup=False)
    if view is not None:
        stderr.print(f"web view at http://{bound_host}:{bound_port}/", markup=False)
        if not ipaddress.ip_address(bound_host).is_loopback:
            stderr.print(f"note: the web view has no authentication and anyone who can reach "
                         f"{bound_host} sees every served repository", markup=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


COMMANDS = (serve,)
