"""What every ``de3pipe`` command shares: the common stage options, declared once, and one clear
line (exit status 2, no traceback) for a user's mistake or a full disk."""

from __future__ import annotations

import errno
import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from de3pipe.config import Config, load_config
from de3pipe.errors import De3Error


@dataclass(frozen=True)
class StageOptions:
    """What every stage command takes besides its own paths."""

    config: Config
    overwrite: bool
    progress: bool
    config_given: bool


_COMMON = [
    inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        list[Path] | None, typer.Option("--config", "-c", help="YAML config (config/config.yaml layout); repeat to layer")]),
    inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        list[str] | None, typer.Option("--set", "-s", help="override a config key: section.key=value (repeatable)")]),
    inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        int | None, typer.Option(help="random seed (overrides the config's seed)")]),
    inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
        bool, typer.Option(help="replace an existing output instead of refusing")]),
    inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
        bool, typer.Option("--quiet", "-q", help="no progress bars")]),
]


def user_errors(fn):
    """Turn a De3Error (or a full disk) into one clear line on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except De3Error as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = f" writing {exc.filename}" if exc.filename else ""
            typer.echo(
                f"error: no space left on the device{where} ({exc.strerror}); free some space and rerun. "
                "Outputs are written to a temporary folder first: the previous complete output, if any, is untouched.",
                err=True,
            )
            raise typer.Exit(2) from None

    return wrapper


def stage_command(app: typer.Typer, name: str | None = None, seed: bool = True):
    """A command that takes the common options (config files, overrides, seed, overwrite, quiet)
    and receives them as one ``opts: StageOptions``."""

    def decorate(fn):
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "opts"]
        common = [p for p in _COMMON if seed or p.name != "seed"]

        @functools.wraps(fn)
        def wrapper(**kwargs):
            files, overrides, chosen_seed = kwargs.pop("config"), kwargs.pop("set_"), kwargs.pop("seed", None)
            cfg = load_config(files, overrides)
            if chosen_seed is not None:
                cfg = cfg.model_copy(update={"seed": chosen_seed})
            opts = StageOptions(cfg, kwargs.pop("overwrite"), not kwargs.pop("quiet"), bool(files))
            return fn(**kwargs, opts=opts)

        wrapper.__signature__ = inspect.Signature(own + common)
        return app.command(name)(user_errors(wrapper))

    return decorate


