"""Ray, and only here: where the job runs (start or join), the one place that turns stages into Ray
Data work, and the few verbs the stages need (a dataset of tables or rows, a manifest read on the
cluster, its rows collected or streamed back, the user's error behind a Ray error).

Where it runs: `ray.address` in the configuration, else RAY_ADDRESS (which `ray job submit` sets
for the job's driver), joins that cluster; otherwise a local Ray starts. A cluster that merely
happens to run on this machine is never joined: Ray's own auto-detection would follow
`ray_current_cluster` in Ray's temp folder to whatever cluster was started last. An address that
cannot be reached, or that answers but is not Ray, is one clear error within seconds (Ray itself
retries for minutes).
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Optional

from vidclust.errors import VidclustError, first_line, storage_oserror
from vidclust.stage import Stage

if TYPE_CHECKING:  # imported where used: the command line starts without pyarrow
    import pyarrow as pa

log = logging.getLogger("vidclust")

PROBE_TIMEOUT_S = 5.0


@dataclass
class RayConfig:
    """The configuration's `ray` section (vidclust.config imports it from here, so that the
    runtime needs nothing of the configuration tree but its own part)."""

    address: Optional[str] = None  # None: RAY_ADDRESS (set by `ray job submit`), else a local Ray


def init_ray(cfg: Any) -> None:
    """Join the cluster named by `ray.address` or RAY_ADDRESS, or start a local Ray. `cfg`: a
    vidclust.config.Config (only its `ray` section, a RayConfig, is read)."""
    import ray

    if ray.is_initialized():
        return
    address, origin = cfg.ray.address, "ray.address"
    if not address:
        address, origin = os.environ.get("RAY_ADDRESS"), "RAY_ADDRESS"
    # -q (vidclust's own level above INFO): Ray's and Ray Data's notices too, errors only; by
    # default (the root logger above INFO: no -v) Ray Data's warnings only, never its INFO lines
    quiet = log.getEffectiveLevel() > logging.INFO
    verbose = logging.getLogger().getEffectiveLevel() <= logging.INFO
    # the worker processes' output (Ray's per-process lines, the libraries' notices inside
    # tasks and actors) reaches the terminal only with -v; it stays in Ray's session logs
    kwargs = dict(logging_level=logging.ERROR if quiet else logging.WARNING, log_to_driver=verbose)
    if quiet:
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    elif not verbose:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        mute_ray_notices()
    on_sigterm = signal.getsignal(signal.SIGTERM)
    if not address or address == "local":
        log.info("starting a local Ray")
        ray.init(address="local", **kwargs)
    else:
        if address != "auto":
            check_reachable(address, origin)
        log.info("joining the Ray cluster at %s", address)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:  # auth, version, address errors
            raise VidclustError(f"cannot join the Ray cluster at {address} ({origin}): "
                                f"{first_line(exc)}") from None
    keep_sigterm_handler(on_sigterm)
    set_progress_bars(True)


def keep_sigterm_handler(handler: Any) -> None:
    """Put back the program's own SIGTERM handler (the command line's: stop as Ctrl-C does), which
    ray.init replaces with sys.exit, and Ray's core worker then with a crash-dump handler that
    ends the process in an abort (exit -6). A program without a handler of its own keeps Ray's."""
    if callable(handler) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _not_the_cpu_gpu_notice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Specifying both num_cpus and num_gpus")


def mute_ray_notices() -> None:
    """Ray's notices that say nothing to a vidclust user, muted without -v: "Token
    authentication is enabled ..." on every local start, and Ray Data's "Specifying both
    num_cpus and num_gpus for map tasks is experimental" for the encoder's GPU actors, which
    reserve a CPU each on purpose (the one that feeds the GPU)."""
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    logging.getLogger("ray.data._internal.execution.operators.map_operator").addFilter(_not_the_cpu_gpu_notice)


def check_reachable(address: str, origin: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise VidclustError unless `address` (host:port, ray://host:port, http://host:port) answers
    as a gRPC server, which a Ray head's GCS (or Ray Client server) is."""
    import grpc

    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise VidclustError(f"{origin}={address!r} is not an address of the form host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise VidclustError(f"cannot reach the Ray cluster at {address} ({origin}): "
                            f"{exc.strerror or exc}") from None
    channel = grpc.insecure_channel(hostport)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise VidclustError(f"{address} ({origin}) answers, but not as a Ray cluster "
                            "(no gRPC there): check the host and port of the Ray head") from None
    finally:
        channel.close()


def current_node_id() -> str | None:
    """The Ray node this code runs on (None outside Ray: tests call stages directly)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:
        return None


def cluster_resources() -> dict:
    import ray

    return {k: float(v) for k, v in ray.cluster_resources().items()}


def apply_stage(ds: Any, stage: Stage) -> Any:
    """`ds.map_batches` for one Stage: Ray tasks for a function, an actor pool for a class."""
    import ray

    args: dict[str, Any] = dict(batch_size=stage.batch_size, batch_format=stage.batch_format,
                                num_cpus=stage.num_cpus)
    if stage.num_gpus:
        args["num_gpus"] = stage.num_gpus
    if stage.memory_mb:
        args["memory"] = stage.memory_mb * 2**20
    if stage.is_actor:
        lo, hi = stage.actors or (1, 1)
        threads = {} if stage.concurrent_calls <= 1 else {
            "max_concurrent_calls_per_actor": stage.concurrent_calls, "enable_true_multi_threading": True}
        args["compute"] = (ray.data.ActorPoolStrategy(size=lo, **threads) if lo == hi else ray.data.ActorPoolStrategy(
            min_size=lo, max_size=hi, initial_size=min(hi, max(lo, stage.initial_actors or lo)), **threads))
        args["fn_constructor_kwargs"] = stage.kwargs
        if not stage.restart_actors:
            args["max_restarts"] = 0
    else:
        args["fn_kwargs"] = stage.kwargs
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for max_restarts yet and warns on the generic form;
        # pyproject.toml keeps Ray below the version said to drop it
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return ds.map_batches(stage.fn, **args)


# ---------------------------------------------------------------------------------------------
# datasets: made from the driver's rows or from files, and brought back


def dataset_of_tables(tables: pa.Table | list[pa.Table]) -> Any:
    """A dataset of Arrow tables, a block per table."""
    import ray

    return ray.data.from_arrow(tables)


def dataset_of_items(items: list[dict]) -> Any:
    """A dataset of small rows, a block per row: each becomes a task of its own."""
    import ray

    return ray.data.from_items(items, override_num_blocks=len(items))


MANIFEST_KINDS = ("parquet", "csv", "json")


def read_manifest(path: str, kind: str, filesystem: Any, csv_column_types: Optional[dict] = None) -> Any:
    """A manifest file as a dataset, read by Ray Data's reader of its kind (parquet, csv, or json:
    JSON lines) on the cluster; a CSV's columns of `csv_column_types` read as those types."""
    import ray

    if kind == "parquet":
        return ray.data.read_parquet(path, filesystem=filesystem)
    if kind == "csv":
        import pyarrow.csv as pacsv

        return ray.data.read_csv(path, filesystem=filesystem,
                                 convert_options=pacsv.ConvertOptions(column_types=csv_column_types or {}))
    if kind == "json":  # pyarrow's JSON reader reads JSON lines (Ray 2.60's lines=True refuses a filesystem)
        return ray.data.read_json(path, filesystem=filesystem)
    raise ValueError(f"unknown manifest kind {kind!r}: one of {', '.join(MANIFEST_KINDS)}")


def repartition(ds: Any, *, blocks: Optional[int] = None, rows_per_block: Optional[int] = None) -> Any:
    """`ds` in `blocks` blocks, or in blocks of about `rows_per_block` rows (no shuffle)."""
    if blocks is not None:
        return ds.repartition(blocks)
    return ds.repartition(target_num_rows_per_block=rows_per_block)


class JobFailed(Exception):
    """Ray work (a task, an actor) failed: its message is the last line of the remote error, which
    is its __cause__; `user_error` finds the user's own error behind it."""


def collect_table(ds: Any, columns: Optional[list[str]] = None, schema: Optional[pa.Schema] = None) -> pa.Table:
    """The rows of `ds` (its `columns` only, when given) as one Arrow table on the driver. Blocks
    without rows are left out (Ray may type them apart); with `schema`, each block is cast to it,
    and no rows at all give its empty table (without one: a table without columns)."""
    import pyarrow as pa
    import ray

    if columns is not None:
        ds = ds.select_columns(columns)
    try:
        tables = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    except ray.exceptions.RayError as exc:
        raise JobFailed(_remote_error_line(exc)) from exc
    if schema is not None:
        tables = [t.cast(schema) for t in tables] or [schema.empty_table()]
    return pa.concat_tables(tables) if tables else pa.table({})


def stream_batches(ds: Any, batch_format: str = "numpy") -> Iterator[Any]:
    """The batches of `ds` on the driver as its blocks finish (a batch per block)."""
    import ray

    try:
        yield from ds.iter_batches(batch_size=None, batch_format=batch_format)
    except ray.exceptions.RayError as exc:
        raise JobFailed(_remote_error_line(exc)) from exc


def set_progress_bars(shown: bool) -> None:
    """Ray Data's progress bars on the terminal, or none (init_ray shows them)."""
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = shown


def request_resources(bundles: list[dict]) -> None:
    """Ask the autoscaler for nodes that fit `bundles` (e.g. [{"GPU": 1}]); [] withdraws the ask."""
    from ray.autoscaler.sdk import request_resources as ask

    ask(bundles=bundles)


# ---------------------------------------------------------------------------------------------
# the user's error behind a Ray error

_USER_ERROR_MARK = "vidclust.errors.VidclustError: "


def user_error(exc: BaseException) -> VidclustError | OSError | None:
    """The error behind `exc` that is the user's to fix, through what it was raised from or while
    handling and, for a Ray error, the remote error it carries (`cause`): a VidclustError (an
    actor that died in its constructor carries it only as text in its message), or the OSError of
    a full, read-only or forbidden storage (`errors.storage_oserror`); None when there is none."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        remote = cause if isinstance(cause, BaseException) else None
        if not isinstance(exc, JobFailed):  # its message is one line of its cause's
            # a Ray error made an instance of its remote error's class: that error, further on
            if isinstance(exc, VidclustError) and remote is None:
                return exc
            stored = storage_oserror(exc)
            if stored is not None:
                return stored
            text = str(exc)
            if _USER_ERROR_MARK in text:
                return VidclustError(text.rsplit(_USER_ERROR_MARK, 1)[1].splitlines()[0].strip())
        exc = exc.__cause__ or remote or exc.__context__
    return None


def _remote_error_line(exc: BaseException) -> str:
    """The last line of the remote error a Ray error carries (of its own message without one)."""
    text = str(getattr(exc, "cause", None) or exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:200]
