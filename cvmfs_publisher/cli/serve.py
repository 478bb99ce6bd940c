"""``serve``: HTTP for real CVMFS clients and Stratum 1s."""

from __future__ import annotations

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
@pass_state
def serve(state: State, repos: tuple[str, ...], fqrn: str | None, host: str, port: int) -> None:
    """Serve repositories at http://HOST:PORT/cvmfs/<name>/ until interrupted."""
    served = {}
    for spec in repos:
        repository = state.repository(spec, (), fqrn)
        if not repository.fqrn:
            raise click.UsageError(f"give --fqrn to serve the directory {spec}")
        served[repository.fqrn] = repository.storage
    server = make_server(served, host, port)
    bound_host, bound_port = server.server_address[:2]
    for name in served:
        stderr.print(f"serving {name} at http://{bound_host}:{bound_port}/cvmfs/{name}/",
                     markup=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


COMMANDS = (serve,)
