"""Operator commands: ``flask --app wsgi quantpulse stats | clear | warm | check-keys | keys … | usage``.

Each command works on the collaborators the app factory built (``app.extensions["quantpulse"]``),
so with ``REDIS_URL`` set it sees the fleet's own cache, statistics, budget and provider health.
Without it the store is embedded in this process, and a command sees only its own store.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any

import click
import redis
from flask import Flask
from flask.cli import AppGroup

from quantpulse.api import components
from quantpulse.api.status import LIVE_PROVIDERS, service_status
from quantpulse.bootstrap import Components
from quantpulse.cli.keys import keys, usage
from quantpulse.cli.text import table
from quantpulse.errors import (
    FailureKind,
    Fallback,
    InvalidSymbol,
    ProviderError,
    ProvidersExhausted,
    QuantPulseError,
)
from quantpulse.infra.store import BACKEND_EMBEDDED
from quantpulse.logs import log_level_at_least, redact
from quantpulse.models import Quote
from quantpulse.periods import PERIODS, SUPPORTED_PERIODS
from quantpulse.providers import catalog
from quantpulse.service import MAX_BATCH_INSTRUMENTS, Answer, BatchResult, StockService
from quantpulse.symbols import ParsedSymbol, parse_symbol

KEY_VERDICTS = {
    FailureKind.AUTH: "rejected (auth)",
    FailureKind.PLAN: "plan",
    FailureKind.RATE_LIMITED: "rate-limited",
    FailureKind.TRANSIENT: "unreachable",
    FailureKind.NOT_FOUND: "ok",  # the key was accepted; only the probe symbol is unknown
}


class _Commands(AppGroup):
    """Commands run in the app context; a store that does not answer is one line, not a traceback.

    Results go to stdout; stderr carries only what is wrong (warnings and errors), the command's
    own notes and progress bars.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with log_level_at_least(logging.WARNING):
                return super().invoke(ctx)
        except redis.RedisError as error:
            raise click.ClickException(f"The store did not answer: {redact(str(error))}") from None
        except QuantPulseError as error:  # a bad argument, an unknown key id: one line
            raise click.ClickException(error.message) from None


cli = _Commands("quantpulse", help="Operate the QuantPulse cache and upstream providers.")


def register_cli(app: Flask) -> None:
    """Add the ``quantpulse`` command group to ``flask``."""
    cli.add_command(keys)
    cli.add_command(usage)
    app.cli.add_command(cli)


def loading_for_flask_cli() -> bool:
    """True while the ``flask`` command loads the app: it does so inside its click context."""
    return click.get_current_context(silent=True) is not None


# ---- stats --------------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw status document.")
def stats(as_json: bool) -> None:
    """Fleet statistics: cache counters, hit rate, provider calls, failures, budget, demo served."""
    parts = components()
    warn_if_embedded(parts)
    fleet = parts.streams.registry.fleet()
    document = service_status(parts.service, parts.guard, fleet, store_problem=parts.stores.problem())
    click.echo(json.dumps(document, indent=2) if as_json else format_status(document["status"]))


def format_status(status: dict[str, Any]) -> str:
    """The status document as two tables, numbers as the status route reports them."""
    cache, chain = status["cache_stats"], status["provider_status"]
    providers = {name: chain["providers"][name] for name in LIVE_PROVIDERS}
    lines = [
        f"QuantPulse {status['status']}: mode {chain['mode']}, {cache['backend']} store, "
        f"{cache['stats_scope']} statistics",
        *([f"store problem: {cache['store_problem']}"] if cache["store_problem"] else []),
        "",
        *table(
            [
                ("cache entries", cache["total_entries"]),
                ("hits", cache["hits"]),
                ("misses", cache["misses"]),
                ("stale served", cache["stale_served"]),
                ("coalesced waits", cache["coalesced_waits"]),
                ("lock takeovers", cache["lock_takeovers"]),
                ("background refreshes", cache["background_refreshes"]),
                ("hit rate", f"{cache['hit_rate']:.1%}"),
            ]
        ),
        "",
        *table(
            [("provider", "configured", "state", "calls", "failures", "budget left", "cooldown until")]
            + [
                (
                    name,
                    "yes" if p["configured"] else "no",
                    p["state"],
                    p["calls"],
                    _failures(p["failures"], p["failures_by_kind"]),
                    _budget(p["budget"]),
                    p["cooldown_until"] or "-",
                )
                for name, p in providers.items()
            ]
        ),
        f"demo served: {chain['providers']['demo']['served']} ({_demo_note(chain)})",
    ]
    lines += [f"last error, {name}: {p['last_error']}" for name, p in providers.items() if p["last_error"]]
    return "\n".join(lines)


def _demo_note(chain: dict[str, Any]) -> str:
    if chain["demo_only"]:
        return "demo only: no live provider configured"
    return f"{'allowed' if chain['demo_allowed'] else 'not allowed'} in this mode"


def _failures(total: int, by_kind: dict[str, int]) -> str:
    kinds = ", ".join(f"{kind} {count}" for kind, count in by_kind.items() if count)
    return f"{total} ({kinds})" if kinds else str(total)


def _budget(budget: dict[str, int | None] | None) -> str:
    if budget is None:
        return "unlimited"
    return ", ".join(
        f"{window.removesuffix('_left')} {'-' if left is None else left}" for window, left in budget.items()
    )


# ---- clear --------------------------------------------------------------------------------


@cli.command()
@click.argument("symbol", required=False)
@click.option("--yes", is_flag=True, help="Clear everything without asking.")
def clear(symbol: str | None, yes: bool) -> None:
    """Drop one instrument's entries (as DELETE /stock/SYMBOL/cache does), or every cache record.

    Without SYMBOL: every entry, negative entry, failure record and fill lock of the namespace;
    statistics, credit budgets and provider health stay.
    """
    parts = components()
    warn_if_embedded(parts)
    service = parts.service
    if symbol is not None:
        instrument = service.instrument(parsed(symbol))
        click.echo(f"Deleted {service.forget(instrument)} keys of {instrument}.")
        return
    if not yes:
        click.confirm(
            f"Delete every cache entry, negative entry, failure record and lock in the "
            f"{parts.stores.backend} store?",
            abort=True,
        )
    click.echo(f"Deleted {service.clear()} keys (statistics, budgets and provider health kept).")


# ---- warm ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Warmed:
    """One warmed item (a quote or a history) as the operator should read it."""

    symbol: str
    what: str
    status: str  # ok, demo (not cached), error, or skipped (budget spent)
    detail: str
    budget_refusal: str | None  # the fallback reason, when it says the credit budget refused a call

    @classmethod
    def of(cls, symbol: str, what: str, outcome: Answer[Any] | QuantPulseError) -> Warmed:
        if isinstance(outcome, QuantPulseError):
            fallbacks = outcome.fallbacks if isinstance(outcome, ProvidersExhausted) else ()
            detail = f"{outcome.status} {outcome.message}"
            return cls(symbol, what, "error", detail, _budget_refusal(fallbacks))
        reason = outcome.fallback_reason or ""
        detail = f"{outcome.source} ({outcome.cache})" + (f"; fell back: {reason}" if reason else "")
        status = "demo" if outcome.is_demo else "ok"
        return cls(symbol, what, status, detail, _budget_refusal(outcome.fallbacks))


def _budget_refusal(fallbacks: Sequence[Fallback]) -> str | None:
    """The fallbacks of this fetch, as text, when the fleet's credit budget stopped one of them."""
    return "; ".join(map(str, fallbacks)) if any(f.budget_refused for f in fallbacks) else None


@cli.command()
@click.argument("symbols", nargs=-1)
@click.option("--file", "symbol_file", type=click.File("r"), help="One symbol per line; # starts a comment.")
@click.option("--history", "period", type=click.Choice(SUPPORTED_PERIODS), help="Also warm this history.")
@click.option(
    "--top", type=click.IntRange(1, 1000), default=None, help="Also the N most requested yesterday and today."
)
@click.pass_context
def warm(
    ctx: click.Context,
    symbols: tuple[str, ...],
    symbol_file: IO[str] | None,
    period: str | None,
    top: int | None,
) -> None:
    """Fetch quotes (and a history period) through the service, so the next requests are hits.

    Batches of at most 20 take the normal path, so the fleet's budget and single flight apply.
    The warm stops once answers fall back because the budget is spent, rather than draining the
    fallback provider or serving demo data. Exit 1 unless every item was warmed.
    """
    parts = components()
    wanted = list(dict.fromkeys([*symbols, *read_symbols(symbol_file), *most_requested(parts, top)]))
    if not wanted:
        raise click.UsageError("Give symbols as arguments, with --file or with --top.")
    warn_if_embedded(parts)
    service = parts.service
    results: list[Warmed] = []
    refusal: str | None = None
    batches = [wanted[i : i + MAX_BATCH_INSTRUMENTS] for i in range(0, len(wanted), MAX_BATCH_INSTRUMENTS)]
    with click.progressbar(length=len(wanted), label="Warming", file=sys.stderr) as bar:
        for batch in batches:
            results += warm_batch(service, batch, period)
            bar.update(len(batch))
            refusal = next((r.budget_refusal for r in results if r.budget_refusal), None)
            if refusal:
                break
    service.stats.flush()  # the CLI exits before the flusher's next beat
    click.echo("\n".join(table([(r.symbol, r.what, r.status, r.detail) for r in results])))
    attempted = {result.symbol for result in results}
    warmed = sum(result.status == "ok" for result in results)
    click.echo(f"Warmed {warmed} of {len(results)} items for {len(attempted)} of {len(wanted)} symbols.")
    if refusal:
        left = [symbol for symbol in wanted if symbol not in attempted]
        raise click.ClickException(
            f"Stopped: the upstream credit budget is spent ({refusal})."
            + (f" Not attempted ({len(left)}): {', '.join(left)}." if left else "")
            + " Run warm again once the budget window has reset."
        )
    if warmed < len(results):
        ctx.exit(1)


def most_requested(parts: Components, top: int | None) -> list[str]:
    """The ``top`` instruments the fleet was asked for most yesterday and today (usage)."""
    if top is None:
        return []
    if parts.usage is None:
        raise click.ClickException("--top reads usage from the shared store: set REDIS_URL.")
    parts.usage.flush()  # this process's own counts too (none, unless it also served requests)
    return [name for name, _ in parts.usage.top_symbols(days=2, limit=top)]


def warm_batch(service: StockService, batch: Sequence[str], period: str | None) -> list[Warmed]:
    """Quotes in one service batch, then each served symbol's history while the budget lasts."""
    result = service.quotes(batch)
    warmed = [Warmed.of(raw, "quote", _batch_outcome(result, raw)) for raw in batch]
    if period is None:
        return warmed
    what = f"history {period}"
    for raw in [item.symbol for item in warmed if item.status != "error"]:
        if any(item.budget_refusal for item in warmed):
            warmed.append(Warmed(raw, what, "skipped", "the credit budget is spent", None))
            continue
        try:
            outcome: Answer[Any] | QuantPulseError = service.history(parse_symbol(raw), PERIODS[period])
        except QuantPulseError as error:
            outcome = error
        warmed.append(Warmed.of(raw, what, outcome))
    return warmed


def _batch_outcome(result: BatchResult, raw: str) -> Answer[Quote] | QuantPulseError:
    return result.quotes.get(raw) or result.errors[raw]


def read_symbols(lines: Iterable[str] | None) -> list[str]:
    """Symbols of a file: one a line, blank lines and # comments skipped."""
    symbols = (line.split("#", 1)[0].strip() for line in lines or ())
    return [symbol for symbol in symbols if symbol]


# ---- check-keys ---------------------------------------------------------------------------


@cli.command("check-keys")
@click.option("--symbol", default="RELIANCE", show_default=True, help="The one quote each provider is asked.")
@click.pass_context
def check_keys(ctx: click.Context, symbol: str) -> None:
    """One quote per configured live provider, to learn whether its key works; keys never shown.

    The probe passes the upstream guard like any call: it costs a credit, and a provider already
    benched (rejected key, cooldown, spent budget) is reported without a call. Exit 1 when any
    configured provider's key is rejected.
    """
    service = components().service
    instrument = service.instrument(parsed(symbol))
    chain = {provider.name: provider for provider in service.chain.providers}
    rows: list[tuple[str, str, str]] = []
    for name in LIVE_PROVIDERS:
        if name not in chain:
            rows.append((name, "not configured", why_not_configured(name, service.settings.stock_provider)))
            continue
        outcome = chain[name].quotes([instrument])[instrument]
        if isinstance(outcome, ProviderError):
            rows.append((name, KEY_VERDICTS[outcome.kind], redact(outcome.message)))
        else:
            rows.append((name, "ok", f"quote of {instrument} received"))
    service.stats.flush()
    click.echo("\n".join(table(rows)))
    if any(verdict == KEY_VERDICTS[FailureKind.AUTH] for _, verdict, _ in rows):
        ctx.exit(1)


def why_not_configured(provider: str, mode: str) -> str:
    """Auto's chain and the provider's own mode take the provider once its key is set; others never."""
    descriptor = catalog.BY_NAME[provider]
    if descriptor.used_by(mode):
        return f"no {descriptor.key_variable}; mode {mode} would use it"
    return f"not in the chain of mode {mode}"


# ---- shared -------------------------------------------------------------------------------


def parsed(symbol: str) -> ParsedSymbol:
    try:
        return parse_symbol(symbol)
    except InvalidSymbol as error:
        raise click.BadParameter(error.message, param_hint="SYMBOL") from None


def warn_if_embedded(parts: Components) -> None:
    """An operator must not believe they changed the fleet when they changed only this process."""
    if parts.stores.backend == BACKEND_EMBEDDED:
        click.echo(
            "Note: REDIS_URL is unset, so this command sees only its own in-process store, "
            "not the running workers' caches.",
            err=True,
        )
