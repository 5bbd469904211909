"""What every ``pulse`` command shares: the typer apps, the consoles, settings, and ``friendly``,
which turns Pulse's own errors into one red line a person can act on (exit code 1), never a
traceback.

Command modules (``core``, ``copyright``, ``moderation``, ``clip``) attach their commands to the
apps defined here; ``streams.cli`` imports them all.
"""
from __future__ import annotations

import contextlib
import functools
import sys

import typer
from rich.console import Console

from streams.settings import Settings

app = typer.Typer(help="Pulse: event-sourced stream processing for a social platform's AI systems.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
topics_app = typer.Typer(help="Topics of the catalog (infra/kafka/topics.toml).", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: one JSON object each, with a same-run baseline.",
                        no_args_is_help=True)
eval_app = typer.Typer(help="Evaluations on labelled data: one JSON object each.", no_args_is_help=True)
train_app = typer.Typer(help="Train a model; writes a versioned artifact with its metrics.",
                        no_args_is_help=True)
dataset_app = typer.Typer(help="Build training sets from the platform's own topics (replay).",
                          no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(bench_app, name="bench")
app.add_typer(eval_app, name="eval")
app.add_typer(train_app, name="train")
app.add_typer(dataset_app, name="dataset")

console = Console()
err_console = Console(stderr=True)

_EXTRA_USER_ERRORS: list[type[BaseException]] = []
_NAMED_USER_ERRORS: list[str] = []


def register_user_errors(*types: type[BaseException] | str) -> None:
    """Declare exception types whose message is meant for the user (printed as one line, exit 1).

    Command modules call this for their own error types (a model that is not trained yet, a bad
    policy file, an unknown review task). A type may be named ``"package.module:ClassName"``
    (its defining module) instead of passed, so that registering it imports nothing: it is
    looked up only when an error is being printed, and only if its module has been imported
    (if not, nothing can have raised it). Every ``pulse`` command imports every command module,
    so this keeps heavy modules (the agents, scikit-learn) off the start of each command and
    off the processes ``pulse export`` starts.
    """
    for t in types:
        registry = _NAMED_USER_ERRORS if isinstance(t, str) else _EXTRA_USER_ERRORS
        if t not in registry:
            registry.append(t)


def _named_user_errors() -> list[type[BaseException]]:
    """The types of :data:`_NAMED_USER_ERRORS` whose modules are imported."""
    found = []
    for ref in _NAMED_USER_ERRORS:
        module, _, name = ref.partition(":")
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return found


def _user_errors() -> tuple[type[BaseException], ...]:
    from models.fingerprints import FingerprintUnavailable, MediaError

    from streams.stores.cassandra import ViewStoreError
    from streams.contracts.codec import CodecError
    from streams.contracts.personal import KeyUnavailable
    from streams.producer import PublishError
    from streams.servers.supervisor import ServerError
    from streams.settings import SettingsError
    from streams.sinks.writers import SinkError
    from streams.contracts.topics import TopicError

    return (ServerError, TopicError, ViewStoreError, CodecError, PublishError, SinkError,
            SettingsError, FileNotFoundError, NotADirectoryError, PermissionError, MediaError,
            FingerprintUnavailable, KeyUnavailable, *_EXTRA_USER_ERRORS, *_named_user_errors())


def friendly(fn):
    """Run a command; print Pulse's own errors as one line and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130)
        except _user_errors() as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            raise typer.Exit(1)
        except KeyError as exc:  # registry / catalog look-ups carry their own message
            err_console.print(f"[bold red]error:[/] {exc.args[0] if exc.args else exc}")
            raise typer.Exit(1)

    return wrapper


def settings() -> Settings:
    return Settings.from_env()


@contextlib.contextmanager
def bench_progress(name: str):
    """Progress bars on stderr for a bench with steps and counted tasks: yields ``(on_step,
    on_progress)`` for ``run_*_bench(on_step=, on_progress=)`` (``on_step(message)`` names the
    current step, ``on_progress(task, done, total)`` opens one bar per task)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console) as bar:
        tasks: dict[str, int] = {}
        step = bar.add_task("starting", total=None)

        def on_progress(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done, total=total)

        yield (lambda m: bar.update(step, description=f"bench {name}: {m}")), on_progress
        bar.update(step, total=1, completed=1)
