"""`lec connectors camel render|apply|delete|status`: Camel K Integrations for the registry's camel flows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

NAMESPACE = typer.Option("lec", "--namespace", "-n", help="Kubernetes namespace of the Integrations.")
KUBECONFIG = typer.Option(None, help="kubeconfig file (default $KUBECONFIG, then ~/.kube/config).")
CONTEXT = typer.Option(None, help="kubeconfig context (default: current-context).")
SERVER = typer.Option(None, help="API server URL, used with --token instead of a kubeconfig.")
TOKEN = typer.Option(None, envvar="LEC_KUBE_TOKEN", help="Bearer token for --server (env LEC_KUBE_TOKEN).")
BROKERS = typer.Option(None, help="Kafka brokers as seen from the cluster (default LEC_KAFKA_BOOTSTRAP).")


def _client(kubeconfig: Path | None, context: str | None, server: str | None, token: str | None) -> Any:
    from connectors.camel.kube import KubeClient

    if server:
        return KubeClient(server, token=token)
    path = kubeconfig or (Path(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") else
                          Path.home() / ".kube" / "config")
    if path.exists():
        return KubeClient.from_kubeconfig(path, context)
    return KubeClient.in_cluster()


def _rendered(namespace: str, brokers: str | None, flow: str | None) -> list[dict[str, Any]]:
    from connectors.camel.integrations import CamelError, render_all
    from lec.config import settings as current
    from lec.registry import open_registry

    s = current()
    kafka = brokers or s.kafka_bootstrap
    if not kafka:
        raise CamelError("pass --brokers (Kafka as seen from the cluster) or set LEC_KAFKA_BOOTSTRAP")
    items = render_all(open_registry(s).snapshot(), namespace=namespace, kafka_brokers=kafka,
                       max_payload_bytes=s.max_payload_bytes)
    if flow:
        items = [i for i in items if i["metadata"]["labels"]["lec.flow"] == flow]
        if not items:
            raise CamelError(f"no active camel flow '{flow}' in the registry")
    return items


def camel_app() -> typer.Typer:
    app = typer.Typer(help="Camel K Integrations for external sources (flows with channel 'camel').",
                      no_args_is_help=True)

    @app.command("render")
    def render(namespace: str = NAMESPACE, brokers: str | None = BROKERS,
               flow: str | None = typer.Option(None, help="Only this flow."),
               out: Path | None = typer.Option(None, help="Write one YAML file per Integration here."),
               community_file: Path | None = typer.Option(
                   None, help="Render this community file's camel flows, not the registry's, as the commented "
                              "example-<kind>.yaml files of infra/camel-k (brokers default to the example's, "
                              "not LEC_KAFKA_BOOTSTRAP).")) -> None:
        """Print (or write) the Integration resources, as YAML, without touching a cluster."""
        from connectors.camel.integrations import to_yaml

        if community_file:
            from connectors.camel.examples import EXAMPLE_BROKERS, example_files

            if flow:
                raise typer.BadParameter("--flow does not go with --community-file (the file's flows are the examples)")
            files = example_files(community_file, namespace=namespace, kafka_brokers=brokers or EXAMPLE_BROKERS)
            if not out:
                typer.echo("---\n".join(files.values()), nl=False)
                return
            out.mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                (out / name).write_text(text, encoding="utf-8")
                typer.echo(str(out / name))
            return
        items = _rendered(namespace, brokers, flow)
        if out:
            out.mkdir(parents=True, exist_ok=True)
            for item in items:
                path = out / f"{item['metadata']['name']}.yaml"
                path.write_text(to_yaml([item]))
                typer.echo(str(path))
        else:
            typer.echo(to_yaml(items), nl=False)

    @app.command("apply")
    def apply(namespace: str = NAMESPACE, brokers: str | None = BROKERS, kubeconfig: Path | None = KUBECONFIG,
              context: str | None = CONTEXT, server: str | None = SERVER, token: str | None = TOKEN,
              flow: str | None = typer.Option(None, help="Only this flow."),
              prune: bool = typer.Option(True, help="Delete lec-managed Integrations whose flow is gone.")) -> None:
        """Create or update the Integrations of the registry's camel flows."""
        client = _client(kubeconfig, context, server, token)
        items = _rendered(namespace, brokers, flow)
        for item in items:
            typer.echo(f"{client.apply(item)}\t{item['metadata']['name']}")
        if prune and not flow:
            wanted = {i["metadata"]["name"] for i in items}
            for existing in client.list_managed(namespace):
                name = existing["metadata"]["name"]
                if name not in wanted and client.delete(namespace, name):
                    typer.echo(f"deleted\t{name}")

    @app.command("delete")
    def delete(names: list[str] = typer.Argument(None, help="Integration names (default: every lec-managed one)."),
               namespace: str = NAMESPACE, kubeconfig: Path | None = KUBECONFIG, context: str | None = CONTEXT,
               server: str | None = SERVER, token: str | None = TOKEN) -> None:
        """Delete Integrations."""
        client = _client(kubeconfig, context, server, token)
        targets = names or [i["metadata"]["name"] for i in client.list_managed(namespace)]
        for name in targets:
            typer.echo(f"{'deleted' if client.delete(namespace, name) else 'absent'}\t{name}")

    @app.command("status")
    def status(namespace: str = NAMESPACE, kubeconfig: Path | None = KUBECONFIG, context: str | None = CONTEXT,
               server: str | None = SERVER, token: str | None = TOKEN) -> None:
        """Phase and readiness of every lec-managed Integration."""
        from connectors.camel.kube import status_row

        client = _client(kubeconfig, context, server, token)
        typer.echo("NAME\tFLOW\tPHASE\tREADY\tMESSAGE")
        for item in client.list_managed(namespace):
            row = status_row(item)
            typer.echo(f"{row['name']}\t{row['flow']}\t{row['phase']}\t{row['ready']}\t{row['message']}")

    @app.command("run")
    def run() -> None:
        """Run the registry's camel flows here on Apache Camel 4 (camel-main): the same routes as `render`."""
        from connectors.camel.run import run as run_camel
        from lec.config import settings as current

        run_camel(current())

    return app


def register(group: typer.Typer) -> None:
    """Add `lec connectors camel ...` to the `lec connectors` group."""
    group.add_typer(camel_app(), name="camel")
