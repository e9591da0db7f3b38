"""`lec connectors http-serve` and `lec tokens issue`: the HTTP channel's commands."""

from __future__ import annotations

import typer


def register(group: typer.Typer) -> None:
    """Add the HTTP commands to the `lec connectors` group."""

    @group.command("http-serve")
    def http_serve(host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for all).")) -> None:
        """HTTP ingest API (uvicorn) on LEC_HTTP_PORT: POST /v1/readings, GET /v1/batches/{id}."""
        from connectors.http.server import run_server

        run_server(host)


def register_tokens(app: typer.Typer) -> None:
    """`lec tokens issue`: bearer tokens for the HTTP API."""
    tokens = typer.Typer(help="Supplier bearer tokens of the embedded issuer.", no_args_is_help=True)

    @tokens.command("issue")
    def tokens_issue(supplier: str = typer.Option(..., help="Supplier id (the token's `supplier` claim)."),
                     ttl: int = typer.Option(3600, help="Lifetime in seconds.")) -> None:
        """Print a signed RS256 JWT for a supplier (embedded issuer; keys in the run dir)."""
        from connectors.http.tokens import issue_for_supplier

        typer.echo(issue_for_supplier(supplier, ttl))

    app.add_typer(tokens, name="tokens")
