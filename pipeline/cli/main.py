"""The command line's entry point: ``python -m pipeline {run,status,resubmit,segment,catalog,train,view} ...``.

Exit codes: 0 success; 2 bad input (one line naming the file and the problem); 1 a
failure during the run (failed tiles are named; ``resubmit`` or ``run`` again resumes).
Tracebacks go to ``<run-dir>/pipeline.log``, which is opened only once the command has
checked its inputs and holds the run directory's lock: a refused command adds nothing
to the folder (log lines until then are kept in memory and written then).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import logging.handlers
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import InputError, RunError


def _parser() -> argparse.ArgumentParser:
    from pipeline.cli.options import add_location_options, add_options
    from pipeline.settings import RunSettings

    parser = argparse.ArgumentParser(prog="python -m pipeline", description="Morpheus at survey scale")
    sub = parser.add_subparsers(dest="command", required=True)

    # Every option below is generated from the settings dataclasses (pipeline.cli.options):
    # each default, choice and help text is written once, on the field.
    run = sub.add_parser("run", help="classify a mosaic (resumes an existing run directory)")
    add_location_options(run, required=False)
    for kind, title in (("input", "input"), ("science", "network and windows (the result depends on these)"),
                        ("compute", "cluster and compute"), ("storage", "run directory")):
        add_options(run.add_argument_group(title), RunSettings, _kind(RunSettings, kind))
    _downstream_options(run)

    segment = sub.add_parser("segment", help="re-run segmentation, deblending and the catalog on a finished "
                                             "classification (no classifying)")
    catalog = sub.add_parser("catalog", help="re-run the catalog on a finished classification, reusing the "
                                             "segmentation maps when their settings match")
    status = sub.add_parser("status", help="show the ledger of a run directory")
    resub = sub.add_parser("resubmit", help="re-run failed or missing tiles and finish the products "
                                            "(with the recorded settings; the options given override them)")
    for command in (segment, catalog, status, resub):
        add_location_options(command, required=True)
    for command in (segment, catalog, resub):
        # Not given: the recorded run's (resubmit) or a local cluster (segment, catalog).
        add_options(command, RunSettings, ("scheduler", "workers", "verbose"), keep_defaults=False)
    for command in (segment, catalog, resub):
        _downstream_options(command)

    from pipeline.training.command import add_parser as add_train_parser
    from pipeline.viewer.command import add_parser as add_view_parser

    add_train_parser(sub)
    add_view_parser(sub)
    return parser


def _kind(cls: type, kind: str) -> list[str]:
    """The option fields of ``cls`` of one ``kind`` (see :class:`~pipeline.settings.run.RunSettings`)."""
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("kind") == kind and "help" in f.metadata]


def _downstream_options(parser: argparse.ArgumentParser) -> None:
    from pipeline.cli.options import add_options
    from pipeline.settings import DownstreamSettings

    add_options(parser.add_argument_group("segmentation and catalog (paper sections 4, 5, 8)"), DownstreamSettings)


def _downstream_settings(args: argparse.Namespace, mosaic: str, mosaics_file: Path | None):
    from pipeline.cli.options import from_args
    from pipeline.inputs.mosaics import known_mosaics
    from pipeline.settings import DownstreamSettings

    values = from_args(args, DownstreamSettings)
    if values["threshold"] is None:  # a TOML mosaic's own threshold, else the detection rule's default
        known = known_mosaics(mosaics_file)
        values["threshold"] = known[mosaic].threshold if mosaic in known else None
    return DownstreamSettings(**values)


def _storage_options(args: argparse.Namespace) -> dict:
    """The command's ``--storage-option`` items as a dict."""
    from pipeline.cli.options import storage_options_from

    return storage_options_from(getattr(args, "storage_option", None))


def _log_path(run_dir: Path | str) -> Path:
    """The log file: in the run directory, or ``./pipeline.log`` for a URL run directory."""
    return run_dir / "pipeline.log" if isinstance(run_dir, Path) else Path("pipeline.log").absolute()


def _buffer_logging() -> logging.handlers.MemoryHandler:
    """Keep log records in memory until the log file can be opened (:func:`_setup_logging`)."""
    buffer = logging.handlers.MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1)
    root = logging.getLogger()
    root.addHandler(buffer)
    root.setLevel(logging.INFO)
    return buffer


def _setup_logging(run_dir: Path | str, buffer: logging.handlers.MemoryHandler | None = None) -> Path:
    """Open the log file (appending), write the records ``buffer`` kept, and log there.

    Raises
    ------
    InputError
        The log file cannot be opened (naming it and why).
    """
    from pipeline.errors import InputError

    log_path = _log_path(run_dir)
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_path)
    except OSError as exc:
        raise InputError(f"{log_path}: cannot write the log file ({exc.strerror or exc})") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    if buffer is not None:
        buffer.setTarget(handler)
        buffer.flush()
        root.removeHandler(buffer)
        buffer.close()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Dask's own logger does not propagate to the root: its warnings (a worker lost, a
    # nanny killing a worker at shutdown) go to the log file too, through a handler of
    # their own (a local cluster sets the level of the "distributed" logger's handlers
    # to WARNING while it runs; the file's handler must keep INFO).
    forward = _Forwarding(handler)
    forward.setLevel(logging.WARNING)
    logging.getLogger("distributed").addHandler(forward)
    return log_path


class _Forwarding(logging.Handler):
    """Passes records on to another handler (which applies its own level and format)."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        """Hand the record to the target handler."""
        self.target.handle(record)


class _Log:
    """Where this command's log goes: memory until the run directory is claimed, then
    the log file (:func:`_setup_logging`).
    """

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = run_dir
        self.buffer: logging.handlers.MemoryHandler | None = None
        self.path: Path | None = None

    def claim(self, command: str) -> Any:
        """The :data:`pipeline.run.Claim` of ``command``: the lock, then the log file."""
        @contextlib.contextmanager
        def claim(location: Any) -> Iterator[Any]:
            from pipeline.rundir.lock import run_lock

            with run_lock(location, command) as held:
                if self.path is None:
                    self.path = _setup_logging(self.run_dir, self.buffer)
                    self.buffer = None
                yield held

        return claim


def _storage_note(args: argparse.Namespace, run_dir: Path | str) -> None:
    """Storage options are for URL run directories: a local one ignores them (and does
    not record them).
    """
    from pipeline.rundir.location import is_url

    given = _storage_options(args)  # screened first: credentials are refused, never echoed
    if given and not is_url(str(run_dir)):
        names = ", ".join(given)
        print(f"note: --storage-option {names} ignored: {run_dir} is a local run directory (storage options "
              "are for URLs such as s3://bucket/run) and is not recorded", file=sys.stderr)


def _write_command(args: argparse.Namespace, run_dir: Path | str, runner: Any, log: _Log) -> None:
    """``run``, ``resubmit``, ``segment`` or ``catalog``: each takes the run directory's
    lock (and opens the log file) only once it knows the folder is one it may use.
    """
    def settings_for(mosaic: str, mosaics_file: Path | None):
        return _downstream_settings(args, mosaic, mosaics_file)

    claim = log.claim(args.command)
    if args.command in ("segment", "catalog"):
        from pipeline.rundir.location import Location

        location = Location(run_dir, _storage_options(args))
        from pipeline.rundir.manifest import read_manifest

        read_manifest(location)  # no run here: refused before the folder changes
        with claim(location):
            runner.redo_downstream(run_dir, settings_for, reuse_segmentation=args.command == "catalog",
                                   storage_options=_storage_options(args), scheduler=getattr(args, "scheduler", None),
                                   workers=getattr(args, "workers", None))
        return
    from pipeline.cli.options import from_args
    from pipeline.settings import RunSettings

    if args.command == "resubmit":
        overrides = {"progress": sys.stderr.isatty(),
                     **from_args(args, RunSettings, ("scheduler", "workers", "verbose"))}
        if args.storage_option:
            overrides["storage_options"] = _storage_options(args)
        runner.resubmit(run_dir, downstream=settings_for, claim=claim, **overrides)
        return
    config = RunSettings(**from_args(args, RunSettings), run_dir=run_dir, storage_options=_storage_options(args))
    runner.run(config, downstream=_downstream_settings(args, args.mosaic, args.mosaics_file), claim=claim)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "train":
        from pipeline.training.command import main as train_main

        return train_main(args)
    if args.command == "view":  # takes the run directory's lock itself, while it builds the map
        from pipeline.viewer.command import main as view_main

        return view_main(args)
    from pipeline.quiet import quiet_environment

    quiet_environment(getattr(args, "verbose", False))  # before any worker starts
    run_dir = args.run_dir or Path("runs") / getattr(args, "mosaic", "demo")
    if isinstance(run_dir, Path):  # recorded absolute: resubmit works from any directory
        run_dir = run_dir.expanduser().absolute()
    log = logging.getLogger("pipeline")
    where = _Log(run_dir)
    try:
        from pipeline import run as runner

        if args.command == "status":
            from pipeline.rundir.status import status

            print_status(status(run_dir, _storage_options(args)))
            return 0
        where.buffer = _buffer_logging()
        _storage_note(args, run_dir)
        _write_command(args, run_dir, runner, where)
        return 0
    except InputError as exc:
        log.error("input error: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunError as exc:
        log.error("run failed: %s", exc)
        print(f"run failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished tiles are kept; run the same command again to resume", file=sys.stderr)
        return 1
    except Exception as exc:  # unexpected: one line here, the traceback in the log
        log.exception("unexpected failure")
        if where.path is not None:
            print(f"run failed: {type(exc).__name__}: {exc} (traceback in {where.path})", file=sys.stderr)
        else:  # failed before the run directory was claimed: no log file to point to
            import traceback

            print(f"run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
        return 1
    finally:
        if where.buffer is not None:  # never claimed: the kept records go nowhere
            logging.getLogger().removeHandler(where.buffer)
            where.buffer.close()


def print_status(report: dict) -> None:
    """Print a run directory's ledger."""
    states = report["states"]
    manifest = report["manifest"]
    print(f"run {manifest['run_id']} of mosaic {manifest['config']['mosaic']} ({manifest['model']})")
    corrupt = report.get("corrupt", {})
    print(f"tiles: {len(states['finished'])} finished, {len(states['failed'])} failed, "
          f"{len(states['pending'])} pending"
          f"{f' ({len(corrupt)} with a bad partial)' if corrupt else ''}; "
          f"products {'written' if report['products'] else 'not written'}")
    for name, record in report["failed"].items():
        print(f"  {name}: {record['error']}")
    for name, problem in sorted(corrupt.items()):
        print(f"  {problem}: 'resubmit' recomputes it")
    for name, store in report.get("stores", {}).items():
        if not store["recorded"] and not store["problems"]:
            print(f"{name}.zarr: unverified (made before checksums were recorded; {store['advice']})")
        elif store["problems"]:
            print(f"{name}.zarr: DAMAGED, {len(store['problems'])} file(s) differ from its checksum record; "
                  f"{store['advice']}")
            for problem in store["problems"]:
                print(f"  {problem}")
        else:
            print(f"{name}.zarr: every file matches its checksum record")

