"""Command line: ``python -m pipeline {run,status,resubmit,segment,catalog} ...``.

Exit codes: 0 success; 2 bad input (one line naming the file and the problem); 1 a
failure during the run (failed tiles are named; ``resubmit`` or ``run`` again resumes).
Tracebacks go to ``<run-dir>/pipeline.log``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from pipeline.errors import InputError, RunError


def _parser() -> argparse.ArgumentParser:
    from morpheus_core import PRECISIONS
    from pipeline.config import CLASSIFIERS, CLUSTERS, GPU_MODES, run_default

    parser = argparse.ArgumentParser(prog="python -m pipeline", description="Morpheus at survey scale")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="classify a mosaic (resumes an existing run directory)")
    run.add_argument("--mosaic", default=run_default("mosaic"), help="demo, goods-s, or a name from --mosaics-file")
    run.add_argument("--run-dir", type=_run_dir_arg,
                     help="run directory: a path, or a URL such as s3://bucket/run (default runs/<mosaic>)")
    run.add_argument("--data-dir", type=Path, help="mosaic files folder (default $MORPHEUS_DATA_DIR or ~/.cache/morpheus-survey/data)")
    run.add_argument("--mosaics-file", type=Path, help="TOML file defining more mosaics")
    run.add_argument("--tile", type=int, default=run_default("tile"), help="tile core size in pixels (%(default)s)")
    run.add_argument("--batch-size", type=int, default=run_default("batch_size"),
                     help="windows per network call (%(default)s)")
    run.add_argument("--stride", type=int, default=run_default("stride"),
                     help="window stride (%(default)s, as the paper)")
    run.add_argument("--retries", type=int, default=run_default("retries"), help="retries of a failing tile (%(default)s)")
    run.add_argument("--workers", type=int, help="local Dask workers (default: one per core)")
    run.add_argument("--threads-per-worker", type=int, default=run_default("threads_per_worker"),
                     help="threads per worker, TensorFlow included (%(default)s)")
    run.add_argument("--scheduler", help="address of an existing Dask scheduler")
    run.add_argument("--wait-workers", type=float, default=run_default("wait_workers"), metavar="SECONDS",
                     help="with --scheduler: wait this long for a (GPU, with --gpu require) worker (600)")
    run.add_argument("--cluster", choices=CLUSTERS, default=run_default("cluster"),
                     help="start a local cluster, or --workers GPU worker jobs on SLURM/PBS (dask-jobqueue)")
    run.add_argument("--cluster-config", type=Path,
                     help="dask-jobqueue YAML for --cluster slurm/pbs (e.g. deploy/hpc/jobqueue.yaml; "
                          "default ~/.config/dask/jobqueue.yaml)")
    _storage_option(run)
    run.add_argument("--gpu", choices=GPU_MODES, default=run_default("gpu"))
    run.add_argument("--precision", choices=PRECISIONS, default=run_default("precision"))
    run.add_argument("--weights", help="Keras .weights.h5 file instead of the released weights")
    run.add_argument("--restart", action="store_true", help="discard an existing run directory's results")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    # Test-only knobs (fault injection, slowing tiles down to interrupt a run).
    run.add_argument("--classifier", choices=CLASSIFIERS, default=run_default("classifier"), help=argparse.SUPPRESS)
    run.add_argument("--fail-tile", action="append", default=[], help=argparse.SUPPRESS)
    run.add_argument("--tile-delay", type=float, default=run_default("tile_delay"), help=argparse.SUPPRESS)

    _downstream_options(run, cluster_options=False)  # run has its own --scheduler/--workers

    segment = sub.add_parser("segment", help="re-run segmentation, deblending and the catalog on a finished "
                                             "classification (no classifying)")
    segment.add_argument("--run-dir", type=_run_dir_arg, required=True)
    _storage_option(segment)
    _downstream_options(segment)
    catalog = sub.add_parser("catalog", help="re-run the catalog on a finished classification, reusing the "
                                             "segmentation maps when their settings match")
    catalog.add_argument("--run-dir", type=_run_dir_arg, required=True)
    _storage_option(catalog)
    _downstream_options(catalog)

    status = sub.add_parser("status", help="show the ledger of a run directory")
    status.add_argument("--run-dir", type=_run_dir_arg, required=True)
    _storage_option(status)

    resub = sub.add_parser("resubmit", help="re-run failed or missing tiles and finish the products")
    resub.add_argument("--run-dir", type=_run_dir_arg, required=True)
    _storage_option(resub)
    resub.add_argument("--scheduler", help="address of an existing Dask scheduler")
    resub.add_argument("--workers", type=int)
    resub.add_argument("--clear-fault-injection", action="store_true", help=argparse.SUPPRESS)
    _downstream_options(resub, cluster_options=False)

    from pipeline.train import add_parser as add_train_parser

    add_train_parser(sub)
    return parser


def _downstream_options(parser: argparse.ArgumentParser, *, cluster_options: bool = True) -> None:
    from pipeline.downstream import downstream_default
    from pipeline.segment import DETECTION_RULES

    group = parser.add_argument_group("segmentation and catalog (paper sections 4, 5, 8)")
    group.add_argument("--detection", choices=tuple(DETECTION_RULES), default=downstream_default("detection"),
                       help="Algorithm 1 rule: paper = markers and edges on the rank-vote background (default, "
                            "as the released code); mean = on the mean background; mixed = rank-vote sky markers "
                            "and edges, source markers from the mean background")
    group.add_argument("--threshold", type=float,
                       help="background <= this marks a source (Algorithm 1; default: the mosaic's if its TOML "
                            "sets one, else 0 for --detection paper, 0.3 for mean and mixed)")
    group.add_argument("--min-distance", type=int, default=downstream_default("min_distance"),
                       help="deblending: min peak separation, pixels (%(default)s)")
    group.add_argument("--nd-max", type=int, default=downstream_default("nd_max"),
                       help="deblending: max children per segment (%(default)s)")
    group.add_argument("--flux-band", default=downstream_default("flux_band"),
                       help="band that deblends and weights Eq. 16 (%(default)s; H = F160W)")
    group.add_argument("--markers", type=Path,
                       help="value-added mode: CSV or FITS table of sources (RA/Dec) that seed Algorithms 1-2")
    group.add_argument("--aperture-radius", type=float, default=downstream_default("aperture_arcsec"),
                       help="value-added mode: aperture radius in arcsec for small or undetected sources (%(default)s)")
    group.add_argument("--max-segment-pixels", type=int,
                       help="deblending: segments with a larger bounding box are kept whole and flagged "
                            "(default: 9 chunks of area)")
    if cluster_options:
        parser.add_argument("--scheduler", help="address of an existing Dask scheduler")
        parser.add_argument("--workers", type=int, help="local Dask workers (default: one per core)")


def _downstream_settings(args: argparse.Namespace, mosaic: str, mosaics_file: Path | None):
    from pipeline.downstream import DownstreamSettings
    from pipeline.mosaics import known_mosaics

    threshold = args.threshold
    if threshold is None:  # a TOML mosaic's own threshold, else the detection rule's default
        known = known_mosaics(mosaics_file)
        threshold = known[mosaic].threshold if mosaic in known else None
    return DownstreamSettings(threshold=threshold, detection=args.detection, min_distance=args.min_distance,
                              nd_max=args.nd_max, flux_band=args.flux_band,
                              markers=str(args.markers) if args.markers else None,
                              aperture_arcsec=args.aperture_radius, max_segment_pixels=args.max_segment_pixels)


def _run_dir_arg(value: str) -> Path | str:
    """``--run-dir``: a path, or a URL kept as typed (``s3://bucket/run``)."""
    from pipeline.storage import run_dir_value

    return run_dir_value(value)


def _storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                        help="fsspec option of a URL run directory, e.g. endpoint_url=https://... "
                             "(repeatable; values are JSON when they parse, else strings; "
                             "credentials come from the environment, never from here)")


def _storage_options(args: argparse.Namespace) -> dict:
    """``--storage-option KEY=VALUE`` pairs as a dict (JSON values where they parse)."""
    import json

    options = {}
    for item in getattr(args, "storage_option", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--storage-option {item!r}: expected KEY=VALUE")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    from pipeline.storage import check_storage_options

    return check_storage_options(options)  # no credentials on command lines


def _log_path(run_dir: Path | str) -> Path:
    """The log file: in the run directory, or ``./pipeline.log`` for a URL run directory."""
    return run_dir / "pipeline.log" if isinstance(run_dir, Path) else Path("pipeline.log").absolute()


def _setup_logging(run_dir: Path | str) -> None:
    log_path = _log_path(run_dir)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _write_command(args: argparse.Namespace, run_dir: Path | str, runner: Any) -> None:
    """``run``, ``resubmit``, ``segment`` or ``catalog``, under the run directory's lock."""
    def settings_for(mosaic: str, mosaics_file: Path | None):
        return _downstream_settings(args, mosaic, mosaics_file)

    if args.command in ("segment", "catalog"):
        runner.redo_downstream(run_dir, settings_for, reuse_segmentation=args.command == "catalog",
                               storage_options=_storage_options(args), scheduler=args.scheduler,
                               workers=args.workers)
        return
    if args.command == "resubmit":
        overrides = {"progress": sys.stderr.isatty()}
        if args.scheduler:
            overrides["scheduler"] = args.scheduler
        if args.workers:
            overrides["workers"] = args.workers
        if args.clear_fault_injection:
            overrides["fail_tiles"] = []
        if args.storage_option:
            overrides["storage_options"] = _storage_options(args)
        runner.resubmit(run_dir, downstream=settings_for, **overrides)
        return
    from pipeline.config import RunConfig

    config = RunConfig(
        mosaic=args.mosaic, run_dir=run_dir, data_dir=args.data_dir, mosaics_file=args.mosaics_file,
        tile=args.tile, batch_size=args.batch_size, stride=args.stride, retries=args.retries,
        workers=args.workers, threads_per_worker=args.threads_per_worker, scheduler=args.scheduler,
        wait_workers=args.wait_workers, cluster=args.cluster, cluster_config=args.cluster_config,
        storage_options=_storage_options(args),
        gpu=args.gpu, precision=args.precision, weights=args.weights, classifier=args.classifier,
        restart=args.restart, progress=not args.no_progress, fail_tiles=tuple(args.fail_tile),
        tile_delay=args.tile_delay,
    )
    runner.run(config, downstream=_downstream_settings(args, args.mosaic, args.mosaics_file))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "train":
        from pipeline.train import main as train_main

        return train_main(args)
    run_dir = args.run_dir or Path("runs") / getattr(args, "mosaic", "demo")
    log = logging.getLogger("pipeline")
    try:
        from pipeline import run as runner

        if args.command == "status":
            print_status(runner.status(run_dir, _storage_options(args)))
            return 0
        _setup_logging(run_dir)
        from pipeline.lock import run_lock
        from pipeline.storage import Location

        with run_lock(Location(run_dir, _storage_options(args)), args.command):
            _write_command(args, run_dir, runner)
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
        print(f"run failed: {type(exc).__name__}: {exc} (traceback in {_log_path(run_dir)})", file=sys.stderr)
        return 1


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


if __name__ == "__main__":
    sys.exit(main())
