"""`merkit serve`: the local web page (predict on dropped clips, browse and compare runs)."""

from __future__ import annotations

import errno
import secrets
import socket
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import typer

from merkit.cli import options
from merkit.cli.app import app, console, say
from merkit.errors import ConfigError

LOCAL = "127.0.0.1"


def check_port(host: str, port: int) -> None:
    """Refuse a port that is taken (or a host that is not this machine's) in one sentence,
    before uvicorn would log its own error and exit."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc})"
            raise ConfigError(
                f"--host {host} --port {port}: the address {reason}; choose another --port"
            ) from None


@app.command()
def serve(
    runs: Annotated[
        Path | None,
        typer.Option(help="Folder searched for run folders and .pt/.onnx checkpoints (read only)."),
    ] = None,
    model: Annotated[
        list[Path] | None, typer.Option(help="A checkpoint to offer (repeat for several).")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on (default: this machine only).")
    ] = LOCAL,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    max_upload_mb: Annotated[float, typer.Option(help="Largest clip accepted, in MB.")] = 200.0,
    device: options.Device = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Access token every request must carry (default: none on this machine; on "
            "another --host one is generated and printed)."
        ),
    ] = None,
) -> None:
    """Start the local web page: drop clips to see when and what, browse and compare runs."""
    try:
        import uvicorn

        from merkit.serve import ServeConfig, create_app
        from merkit.serve.guard import allowed_hosts, is_loopback, is_wildcard
    except ImportError as exc:
        raise ConfigError(
            f"merkit serve needs the serve extra ({exc.name} is missing): "
            "pip install -c constraints.txt -e '.[serve]'"
        ) from None
    if runs is not None and not runs.is_dir():
        raise ConfigError(f"--runs {runs}: not a folder")
    for path in model or []:
        if not path.is_file():
            raise ConfigError(f"--model {path}: no such file")
    if not 0 < port < 2**16:
        raise ConfigError(f"--port {port}: expected a port from 1 to {2**16 - 1}")
    if token is not None and not token.strip():
        raise ConfigError("--token: empty; give a secret, or leave the option out")
    exposed = not is_loopback(host)
    config = ServeConfig(
        runs=runs,
        models=tuple(model or ()),
        max_upload_mb=max_upload_mb,
        hosts=tuple(allowed_hosts(host)),
        token=token or (secrets.token_urlsafe(16) if exposed else None),
        device=device or "auto",
    )
    check_port(host, port)
    if exposed:
        say(
            "warning:",
            "bold yellow",
            f"--host {host} listens beyond this machine: anyone on the network who has the "
            "address printed below (it holds the access token) can upload clips and read every "
            "run and checkpoint under --runs; share it only with them",
        )
    import torch

    from merkit.training.devices import resolve_device

    resolve_device(device or "auto")  # a device this machine lacks: refused before starting
    torch.set_num_threads(1)  # one small map per clip, as in `merkit predict`
    web = create_app(config)
    name = socket.gethostname() if is_wildcard(host) else host
    shown = f"[{name}]" if ":" in name else name
    query = f"?token={quote(config.token, safe='')}" if config.token else ""
    count = len(web.state.catalog.models())
    where = runs if runs is not None else "nowhere (no --runs)"
    console.print(
        f"merkit serve: http://{shown}:{port}/{query} ({count} checkpoint"
        f"{'' if count == 1 else 's'}, runs from {where}); Ctrl-C stops",
        soft_wrap=True,
        highlight=False,
    )
    uvicorn.run(web, host=host, port=port, log_level="warning")
