"""TensorBoard over runs: a tuning trial's hparams, and the server that shows the logs.

Every run writes its TensorBoard logs into ``<run>/tensorboard/`` while it trains (the
callback is :func:`cnnlab.train.callbacks.tensorboard_callback`): ``train/`` and
``validation/`` hold the epoch scalars (the learning rate included) and the model graph.
A tuning trial also records its parameters there for the HParams dashboard
(:func:`write_trial_hparams`).

No ``hparams_config`` is written: without one, the HParams plugin collects the columns
from the trials' own records and takes every scalar under a trial's folder as a metric
(``validation/epoch_accuracy`` is the ``val_accuracy`` objective), and it would use only
the first config it finds, hiding the parameters of other studies in the same logdir.

:func:`start_tensorboard` runs ``tensorboard`` as a child process over chosen runs or the
whole workspace; ``python -m cnnlab tensorboard`` and the Experiments page's command use
it. Nothing here imports TensorFlow at import time.
"""

from __future__ import annotations

import errno
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cnnlab import runs, workspace
from cnnlab.errors import CnnlabError
from cnnlab.run import TENSORBOARD_DIR

# TensorBoard's own default port; the next few are tried when it is taken.
DEFAULT_PORT = 6006
PORTS_TRIED = 10
# Starting imports TensorFlow: seconds on an idle machine, more on a busy one.
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
# Hosts that mean "every interface": the server is reached through this machine's name.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


# ------------------------------------------------------------------------------- hparams


def trial_hparams(tune: dict[str, Any]) -> tuple[dict[str, bool | int | float | str], str]:
    """``(hparams, trial_id)`` of a tuning trial's ``tune`` record.

    The hparams are the trial's ``params`` plus its ``study`` (a column to filter by when
    several studies share one TensorBoard); values that are not bool, int, float or str
    are written as text. The trial id includes the study, because TensorBoard merges
    trials of the same id into one row.
    """
    hparams: dict[str, bool | int | float | str] = {}
    for name, value in (tune.get("params") or {}).items():
        value = value.item() if hasattr(value, "item") else value  # numpy scalars
        hparams[str(name)] = value if isinstance(value, bool | int | float | str) else str(value)
    study, trial = tune.get("study"), tune.get("trial")
    if study is not None:
        hparams.setdefault("study", str(study))
    trial_id = "/".join(str(part) for part in (study, trial) if part is not None)
    return hparams, trial_id or "trial"


def write_trial_hparams(log_dir: Path | str, tune: dict[str, Any]) -> None:
    """Record a tuning trial's parameters in ``log_dir`` for TensorBoard's HParams
    dashboard (its metrics are the scalars of ``log_dir``'s ``train/`` and
    ``validation/``)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    hparams, trial_id = trial_hparams(tune)
    writer = tf.summary.create_file_writer(str(log_dir))
    try:
        with writer.as_default():
            hp.hparams(hparams, trial_id=trial_id)
    finally:
        writer.close()


# -------------------------------------------------------------------------------- server


def tensorboard_command(run_ids: Iterable[str] = ()) -> str:
    """The shell command that opens TensorBoard over ``run_ids`` (all runs when empty),
    with this workspace's ``CNNLAB_HOME`` when one is set."""
    command = shlex.join(["python", "-m", "cnnlab", "tensorboard", *run_ids])
    home = os.environ.get("CNNLAB_HOME")
    return f"CNNLAB_HOME={shlex.quote(home)} {command}" if home else command


@dataclass
class TensorBoardServer:
    """A running TensorBoard child process; :meth:`stop` ends it."""

    process: subprocess.Popen  # the ``python -m tensorboard.main`` child
    url: str  # where it answers
    logdir: str  # its ``--logdir``, or the ``--logdir_spec`` of chosen runs
    runs: list[str]  # the runs it shows (those with logs, for the whole workspace)
    log: IO[bytes] = field(repr=False)  # the child's stdout and stderr

    def output(self, lines: int = 8) -> str:
        """The last ``lines`` lines the child printed."""
        # pread: the child shares the file's offset, which must stay at the end.
        size = os.fstat(self.log.fileno()).st_size
        text = os.pread(self.log.fileno(), size, 0).decode("utf-8", errors="replace")
        return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Terminate the child (kill it when it does not exit within ``timeout``)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def start_tensorboard(
    run_ids: Iterable[str] = (),
    port: int | None = None,
    host: str = "localhost",
    timeout: float = START_TIMEOUT_S,
) -> TensorBoardServer:
    """Start TensorBoard over ``run_ids`` (the whole workspace's runs when empty) and
    wait until it answers HTTP.

    Args:
        run_ids: runs to show, each under its id; none = every run of the workspace.
        port: the port to serve on; None = the first free one from 6006.
        host: the interface to listen on (``0.0.0.0`` = all).
        timeout: seconds to wait for the first answer.

    Raises:
        CnnlabError: for an unknown run, a port in use, or a TensorBoard that exits or
            does not answer in time.
    """
    run_ids = list(dict.fromkeys(run_ids))
    if run_ids:
        # The run folder, not its tensorboard/: with --logdir_spec, TensorBoard names the
        # root of a spec'd folder "<name>/.", which the HParams plugin does not see as the
        # parent of "<name>/train", so a trial's metrics would go missing.
        paths = {run_id: runs.load_run(run_id).path for run_id in run_ids}
        if any("," in str(path) for path in paths.values()):
            raise CnnlabError(
                f"TensorBoard cannot read runs under {workspace.runs_root()}: its path has "
                "a comma. Leave out the run ids to open the whole workspace instead."
            )
        logdir_flag = "--logdir_spec"
        logdir = ",".join(f"{run_id}:{path}" for run_id, path in paths.items())
        shown = run_ids
    else:
        root = workspace.runs_root()
        logdir_flag, logdir = "--logdir", str(root)
        shown = sorted(path.name for path in root.iterdir() if (path / TENSORBOARD_DIR).is_dir())
    port = _free_port(host) if port is None else _checked_port(host, port)
    command = [sys.executable, "-m", "tensorboard.main", logdir_flag, logdir]
    command += ["--port", str(port), "--host", host or "0.0.0.0"]
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its own session: the caller stops it (a Ctrl-C reaches only the caller).
        start_new_session=True,
    )
    server = TensorBoardServer(process, _url(host, port), logdir, shown, log)
    try:
        _wait_until_serving(server, port, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _url(host: str, port: int) -> str:
    name = socket.gethostname() if host in WILDCARD_HOSTS else host
    return f"http://[{name}]:{port}/" if ":" in name else f"http://{name}:{port}/"


def _port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (as TensorBoard would)."""
    address = "0.0.0.0" if host in WILDCARD_HOSTS else host
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise CnnlabError(f"TensorBoard cannot listen on host {host!r}: {error}.") from None
    return True


def _checked_port(host: str, port: int) -> int:
    if not 1 <= port <= 65535:
        raise CnnlabError(f"`port` must be in [1, 65535]. Received: port={port}")
    if not _port_free(host, port):
        raise CnnlabError(_port_in_use(port))
    return port


def _port_in_use(port: int) -> str:
    return (
        f"Port {port} is already in use (another TensorBoard?). Pick another with --port, "
        "or leave --port out to take a free one."
    )


def _free_port(host: str) -> int:
    for port in range(DEFAULT_PORT, DEFAULT_PORT + PORTS_TRIED):
        if _port_free(host, port):
            return port
    address = "0.0.0.0" if host in WILDCARD_HOSTS else host
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))  # any free port the system offers
        return probe.getsockname()[1]


def _wait_until_serving(server: TensorBoardServer, port: int, timeout: float) -> None:
    # Straight to the server: a proxy from the environment must not answer for it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    probe_url = server.url
    if server.url.startswith(f"http://{socket.gethostname()}:"):
        probe_url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while True:
        code = server.process.poll()
        if code is not None:
            output = server.output()
            if "could not bind" in output.lower():
                raise CnnlabError(_port_in_use(port))  # taken since it was checked
            raise CnnlabError(f"TensorBoard exited (code {code}) before serving:\n{output}")
        try:
            with opener.open(probe_url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise CnnlabError(
                f"TensorBoard did not answer at {server.url} within {timeout:.0f} s; "
                f"its output:\n{server.output()}"
            )
        time.sleep(0.25)
