"""Operator commands for client API keys and their usage: ``flask --app wsgi quantpulse keys …``
and ``quantpulse usage``. They work on the same store as the admin routes (``REDIS_URL``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import IO

import click
from flask.cli import AppGroup, with_appcontext

from quantpulse.access.keys import KeyRecord, KeyStore
from quantpulse.access.usage import ANONYMOUS, UsageRecorder, client_of
from quantpulse.api import components
from quantpulse.cli.text import bars, table

keys = AppGroup("keys", help="Issue, list, change, rotate, revoke, export and import client API keys.")

RECORD_COLUMNS = ("id", "name", "tier", "created", "expires", "revoked", "last used")


def key_store() -> KeyStore:
    store = components().keys
    if store is None:
        raise click.ClickException("API keys need the shared store: set REDIS_URL.")
    return store


def rows(records: list[KeyRecord]) -> list[str]:
    body = [
        (r.id, r.name, r.tier, r.created, r.expires or "-", "yes" if r.revoked else "no", r.last_used or "-")
        for r in records
    ]
    return table([RECORD_COLUMNS, *body])


def show_key(record: KeyRecord, key: str) -> None:
    click.echo("\n".join(rows([record])))
    click.echo(f"key: {key}")
    click.echo("Shown this once: only its SHA-256 is stored.", err=True)


@keys.command("create")
@click.argument("name")
@click.option("--tier", default=None, help="A tier of API_TIER_<NAME> (default: free).")
@click.option("--expires", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]), default=None)
def create(name: str, tier: str | None, expires: datetime | None) -> None:
    """Issue a key; it is printed this once."""
    record, key = key_store().create(name, tier, expires.astimezone() if expires else None)
    show_key(record, key)


@keys.command("list")
def list_keys() -> None:
    """Every key's record, revoked ones included (never a key)."""
    click.echo("\n".join(rows(key_store().list())))


@keys.command("update")
@click.argument("key_id")
@click.option("--name", default=None)
@click.option("--tier", default=None)
def update(key_id: str, name: str | None, tier: str | None) -> None:
    """Rename or re-tier a key."""
    if name is None and tier is None:
        raise click.UsageError("Give --name and/or --tier.")
    click.echo("\n".join(rows([key_store().update(key_id, name=name, tier=tier)])))


@keys.command("rotate")
@click.argument("key_id")
def rotate(key_id: str) -> None:
    """A new key for the same id; the old one stops working within a second."""
    show_key(*key_store().rotate(key_id))


@keys.command("revoke")
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key everywhere within a second."""
    click.echo("\n".join(rows([key_store().revoke(key_id)])))


@keys.command("export")
@click.argument("file", type=click.File("w"), default="-")
def export(file: IO[str]) -> None:
    """Every record with its digest, one JSON object a line (a backup; no key is in it)."""
    records = key_store().export()
    for record in records:
        file.write(json.dumps(record) + "\n")
    click.echo(f"Exported {len(records)} key records.", err=True)


@keys.command("import")
@click.argument("file", type=click.File("r"))
@click.option("--replace", "replace_existing", is_flag=True, help="Overwrite records that exist.")
def import_(file: IO[str], replace_existing: bool) -> None:
    """Records from ``keys export`` put back (existing ids are kept unless --replace)."""
    try:
        documents = [json.loads(line) for line in file if line.strip()]
    except ValueError as error:
        raise click.ClickException(f"Not a key export: {error}") from None
    written = key_store().restore(documents, replace_existing=replace_existing)
    click.echo(f"Imported {written} of {len(documents)} key records.")


@click.command("usage")
@with_appcontext
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 366))
@click.option("--key", "key_id", default=None, help="One key's usage (default: every key and anonymous).")
def usage(days: int, key_id: str | None) -> None:
    """Requests per UTC day with a bar chart, per client."""
    parts = components()
    recorder: UsageRecorder | None = parts.usage
    if recorder is None:
        raise click.ClickException("Usage is counted in the shared store: set REDIS_URL.")
    recorder.flush()
    clients = [client_of(key_id)] if key_id else [*recorder.clients(days)] or [ANONYMOUS]
    names = {
        client_of(r.id): f"{r.name} ({r.id}, {r.tier})" for r in (parts.keys.list() if parts.keys else [])
    }
    for client in clients:
        report = recorder.report(client, days)
        click.echo(f"{names.get(client, client)}: {report['requests']} requests, "
                   f"{report['upstream_credits']} upstream credits")  # fmt: skip
        daily = report["daily"]
        chart = bars([day["requests"] for day in daily])
        click.echo(
            "\n".join(
                table([(day["date"], day["requests"], bar) for day, bar in zip(daily, chart, strict=True)])
            )
        )
        click.echo("")
