"""The `vidclust` command line: it parses the arguments, loads the one configuration, sets up logging
and signals, and calls the command's function of vidclust.api (which sequences the stages)."""
from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
from typing import Optional

from vidclust import api
from vidclust.config import Config, load_config
from vidclust.errors import VidclustError, reason
from vidclust.runtime import user_error

log = logging.getLogger("vidclust")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML run configuration (default: the built-in "
                   "defaults, the same as cluster_configs/local.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one configuration field by its dotted name, e.g. "
                        "--set embed.sampling.frame_interval=5 (repeatable)")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    loud.add_argument("-v", "--verbose", action="store_true",
                      help="the libraries' INFO lines too (Ray Data's plans and progress logs, open_clip); "
                           "by default only vidclust's own progress and summary lines and warnings")


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="NAME_OR_JSON",
                   help="open_clip model name or path of a model-config JSON (embed.encoder.model)")
    p.add_argument("--pretrained", metavar="TAG_OR_PATH_OR_none",
                   help="weights tag, local checkpoint path, or 'none' for random weights "
                        "(embed.encoder.pretrained)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidclust", description="Group a corpus of videos into clusters of similar content and "
        "describe each cluster in words.")
    from vidclust import __version__
    from vidclust.store.layout import DESCRIPTIONS_FILE, REPORT_PAGE_FILE

    parser.add_argument("--version", action="version", version=f"vidclust {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str, *args: tuple[str, str], model: bool = False):
        p = sub.add_parser(name, help=help, description=help)
        for arg, arg_help in args:
            p.add_argument(arg, help=arg_help)
        _common(p)
        if model:
            _model_options(p)
        return p

    src = ("SOURCE", "a folder of videos, a glob, a manifest (.csv/.parquet/.jsonl with a `path` "
           "column), WebDataset .tar shards (one, a comma-separated list, a glob or "
           "shards/{00000..00099}.tar) or an MSR-VTT root; local or any pyarrow filesystem URI")
    out = ("OUT", "output folder (local path or URI)")
    add("embed", "decode, sample and embed every video of SOURCE into OUT/frames", src, out, model=True)
    add("cluster", "aggregate per video, cluster, score: OUT/clusters", out)
    add("describe", f"describe every cluster in words: OUT/{DESCRIPTIONS_FILE}", out)
    add("report", f"plots and OUT/{REPORT_PAGE_FILE}", out)
    add("run", "every stage: embed, cluster, describe, report", src, out, model=True)
    add("assign", "embed new videos and assign them to the saved cluster centres", out,
        ("NEW_SOURCE", "the new videos (same forms as SOURCE)"))
    p = add("stats", "data set statistics of SOURCE: durations, frame rates, sizes, codecs", src)
    p.add_argument("--out", metavar="DIR", help="folder for the table and histograms (PNG)")
    p = sub.add_parser("example", help="write the example corpus (short captioned clips of three "
                       "topics) and its manifest", description="write the example corpus")
    p.add_argument("DIR", help="folder to write it to")
    p.add_argument("--per-topic", type=int, default=8, help="clips per topic (default 8)")
    return parser


def _config(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    if getattr(args, "model", None):
        overrides.append(f"embed.encoder.model={args.model}")
    if getattr(args, "pretrained", None):
        overrides.append(f"embed.encoder.pretrained={args.pretrained}")
    cfg = load_config(args.config, overrides)
    return cfg


def dispatch(args: argparse.Namespace) -> None:
    """Run the command `args` name: through vidclust.api, which sequences the stages."""
    if args.command == "example":
        from vidclust.example import make_example_corpus

        manifest = make_example_corpus(args.DIR, per_topic=args.per_topic)
        print(f"example corpus written: {manifest}")
        return
    cfg = _config(args)
    progress = not args.quiet
    if args.command == "embed":
        api.embed(args.SOURCE, args.OUT, config=cfg, show_progress=progress)
    elif args.command == "run":
        api.run(args.SOURCE, args.OUT, config=cfg, show_progress=progress)
        from vidclust.store.layout import REPORT_PAGE_FILE

        print(f"done: open {os.path.join(args.OUT, REPORT_PAGE_FILE)}")
    elif args.command == "assign":
        api.assign(args.OUT, args.NEW_SOURCE, config=cfg, show_progress=progress)
    elif args.command == "stats":
        from vidclust.statistics.run import format_stats

        summary = api.stats(args.SOURCE, args.out, config=cfg)
        print(format_stats(summary))
        if args.out is not None:
            print(f"wrote {', '.join(summary['files'])} to {args.out}")
    elif args.command in ("cluster", "describe", "report"):
        getattr(api, args.command)(args.OUT, config=cfg)
    else:  # pragma: no cover - the parser offers only the commands above
        raise VidclustError(f"unknown command {args.command}")


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, systemd, Kubernetes): the run stops as Ctrl-C stops it (the writer lock
    released, the finished videos kept), by the same paths, since it is a KeyboardInterrupt."""


def _raise_terminated(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_terminated)  # vidclust.runtime.init_ray keeps it past ray.init
    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    # read when Ray Data is first imported: before any stage runs. By default Ray Data's warnings
    # only (no plan dumps, no progress logged as INFO lines); -q errors only; -v all of it
    if quiet:
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
    elif not verbose:
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
    # the libraries (root logger): warnings, INFO with -v; vidclust's own lines: INFO, warnings with -q
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("vidclust").setLevel(logging.WARNING if quiet else logging.INFO)
    logging.captureWarnings(True)  # Python warnings through logging, each once per place (the default filter)
    try:
        dispatch(args)
    except VidclustError as exc:
        print(f"vidclust: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"vidclust: {what}; run the same command again to continue where it stopped",
              file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:
        cause = user_error(exc)
        if cause is None:
            raise
        if isinstance(cause, VidclustError):  # raised in a Ray task or actor
            print(f"vidclust: error: {cause}", file=sys.stderr)
            return 2
        out = getattr(args, "OUT", None) or getattr(args, "out", None) or "the output folder"
        if cause.errno in (errno.ENOSPC, errno.EDQUOT):
            what = "no space left on device" if cause.errno == errno.ENOSPC else "disk quota exceeded"
            print(f"vidclust: error: {what} writing {out} ({reason(cause)}); free space and run the "
                  "same command again: finished videos are kept", file=sys.stderr)
        else:
            print(f"vidclust: error: cannot write to {out} ({reason(cause)}); make it writable and run "
                  "the same command again: finished videos are kept", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
