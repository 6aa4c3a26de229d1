"""The live app in a real browser: how fast a fresh server draws its first page, and
how it holds up while a run trains and a dozen tabs watch and predict.

    python bench/bench_load.py                  # both parts, about 8 minutes on 2 cores
    python bench/bench_load.py --only cold --rounds 5
    python bench/bench_load.py --only load --seconds 60 --watchers 5 --uploaders 2

Everything runs as a user runs it: a fresh ``CNNLAB_HOME`` with the digits sample
ingested by the CLI (``cnnlab ingest sample:digits``), a real ``streamlit run app.py``,
training started with ``cnnlab train``, and one headless Chromium driven by Playwright
(the flags of scripts/live.py, plus no throttling of background tabs, so every
browser context behaves like a tab someone is looking at).

cold (``--rounds`` rounds, each a fresh server on a fresh copy of the workspace)
    ``health_s``: from starting ``streamlit run app.py`` to the first 200 of
    ``/_stcore/health``. ``content_s``: from opening the server's URL to the Data page's
    ``h1`` "Data" and the sidebar's Dataset selectbox both drawn (``title_s`` and
    ``sidebar_s``: when each first showed). ``total_s``: from starting the process to
    that moment. Also the sidebar's device caption at that
    moment ("Device: detecting..." while the background thread still imports
    TensorFlow). Target: ``content_s`` (median) within 2 s.

load (one server; the workspace holds digits and a 1-epoch run, so Predict has a model)
    Training is a long run of the simple architecture at 32 px (no early stopping, no
    time budget) started with ``cnnlab train --detach`` and cancelled at the end. First
    a baseline run trains for ``--seconds`` with nobody watching; then the same run
    again while ``--watchers`` contexts show /train and ``--uploaders`` contexts upload
    digit PNGs on /predict, one after another: back to back (the worst case), or
    ``--think-s`` seconds after each result, as a person looks at what the model said
    before trying the next image. Both windows start after the run's
    first epoch (which traces the model). Chromium runs on the same machine, so its
    rendering takes CPU from training too, as it would on a laptop. With
    ``--browser-nice 19`` it runs on the lowest priority instead and takes only CPU the
    server and the training leave: the visitors' browsers on their own machines, as in
    a demo, where the server's share is what slows the training.

    fresh progress lag
        The worker appends a timestamped progress event to events.jsonl at most every
        0.5 s. For each such event in the window and each watcher, the lag is the time
        from the event being written to the watcher first showing that progress or
        later in its "Epoch e of E" / "Batch b of B" bars (a MutationObserver in the page
        records each change with the browser's clock, the machine's clock the worker
        also uses). An event not shown by the end counts with the time it had waited.
        The browser fetches the run's progress every second (``cnnlab.live``'s route)
        and updates the bars in place, so a page keeping up shows a p50 near 0.5-1 s.
        Also reported: the intervals between two changes of the shown progress
        (``redraw``).
    prediction latency
        From setting a PNG on the page's file input to its verdict (``st.success`` or
        ``st.warning``), its image caption and the top-k chart all shown. Each upload
        is another test image under a new name (no cache hit); the previous file is
        removed first, as a user would; the page's redraw after that removal is timed
        apart (``remove_*``). Each uploader's first prediction (the server imports
        TensorFlow and loads the model) comes before the window. Predict uses the run
        it picks by default: the training run itself once that has a checkpoint
        (``predictions_on_live_run``), its model reloaded whenever the checkpoint is
        rewritten.
    errors
        Streamlit exceptions (``stException``) and error boxes on any page, plus
        Playwright timeouts. Target: 0.
    training throughput
        Images trained per wall-clock second over the window (validation and
        checkpoints included), from the progress events; under load vs the baseline.
        Target: ``throughput_ratio`` >= 0.75 (at most 25% slower). The median of the
        epochs' own images/s (training steps only) is reported too.
    memory and CPU
        Peak RSS of the server (the streamlit process and its children) and, apart, of
        the training worker. The CLI starts the worker in a new session and returns,
        so the worker is re-parented to init and never in the server's process tree
        (checked: ``worker_in_server_tree``). And the CPU seconds each used in the
        window, with Chromium's and the rest of the machine's (``cpu_s``): where the
        training's time went, and whether the machine was quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import psutil
from common import REPO, add_common_args, bench_workspace, run
from playwright.async_api import TimeoutError as PlaywrightTimeout
from playwright.async_api import async_playwright

sys.path.insert(0, str(REPO))  # this process reads run folders with cnnlab.runs
from scripts import live  # noqa: E402 - the app served as the browser tests serve it

CONTENT_TARGET_S = 2.0
THROUGHPUT_TARGET = 0.75
MB = 2**20
# scripts/live.py's flags, and no timer throttling or lower priority for tabs in the
# background: each context stands for someone looking at the page.
CHROMIUM_FLAGS = [
    *live.CHROMIUM_FLAGS,
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
VIEWPORT = {"width": 1366, "height": 900}
PAGE_TIMEOUT_MS = 60_000
OPEN_TIMEOUT_MS = 180_000  # the first draw of a dozen tabs at once, next to training
FIRST_EPOCH_TIMEOUT_S = 600
TRAIN = ["-m", "cnnlab", "train", "--dataset", "digits", "--arch", "simple", "--image-size", "32"]
LONG_RUN = ["--epochs", "500", "--budget", "0", "--set", "early_stopping=false", "--detach"]

# The Predict page with a model and no file uploaded; the Train page's progress bars;
# what Streamlit shows when something failed.
PREDICT_READY = "text=Drop one or more images"
PROGRESS_BARS = "[data-testid='stMain'] .cnnlab-live .bar:not([hidden])"
ERRORS = (
    "[data-testid='stMain'] [data-testid='stException'], "
    "[data-testid='stMain'] [data-testid='stAlertContentError']"
)

# Polled until the Data page's title and the sidebar's Dataset selectbox are both
# drawn; notes when each first showed (the browser's clock, ms) and then returns those
# times, the sidebar's device caption and the count of Streamlit exceptions.
DATA_PAGE_DRAWN_JS = """() => {
    const seen = window.__benchSeen = window.__benchSeen || {};
    const title = document.querySelector('[data-testid="stMain"] h1');
    if (!seen.title && title && title.textContent.trim().startsWith('Data')) {
        seen.title = Date.now();
    }
    const sidebar = document.querySelector('[data-testid="stSidebar"]');
    const boxes = sidebar ? [...sidebar.querySelectorAll('[data-testid="stSelectbox"]')] : [];
    if (!seen.sidebar && boxes.some(box => box.textContent.includes('Dataset'))) {
        seen.sidebar = Date.now();
    }
    if (!seen.title || !seen.sidebar) return null;
    const captions = [...sidebar.querySelectorAll('[data-testid="stCaptionContainer"]')];
    const device = captions.map(c => c.textContent.trim()).find(t => t.startsWith('Device:'));
    return {...seen, device: device || '(no device caption)',
            exceptions: document.querySelectorAll('[data-testid="stException"]').length};
}"""

# Installed in each watcher tab (with PROGRESS_BARS and ERRORS): records every change
# of the progress bars' text with the browser's clock, and the text of every exception
# or error box that shows up.
RECORDER_JS = """([bars, errors]) => {
    const log = window.__benchLog = {changes: [], errors: []};
    const read = () => [...document.querySelectorAll(bars)]
        .map(bar => bar.textContent.trim()).join(' | ');
    let last = read();
    log.changes.push([Date.now(), last]);
    new MutationObserver(() => {
        const text = read();
        if (text !== last) { last = text; log.changes.push([Date.now(), text]); }
        for (const error of document.querySelectorAll(errors)) {
            const message = error.textContent.slice(0, 300);
            if (!log.errors.includes(message)) log.errors.push(message);
        }
    }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""

# A prediction's result for the file ``name``: {live} once its verdict, caption and
# top-k chart are shown, {error} when an exception or error box (ERRORS) shows, else null.
RESULT_JS = """([name, errors]) => {
    const main = document.querySelector('[data-testid="stMain"]');
    if (!main) return null;
    const failure = document.querySelector(errors);
    if (failure) return {error: failure.textContent.slice(0, 300)};
    const verdict = main.querySelector(
        '[data-testid="stAlertContentSuccess"], [data-testid="stAlertContentWarning"]');
    const caption = [...main.querySelectorAll('[data-testid="stImageCaption"]')]
        .some(element => element.textContent.includes(name));
    const chart = main.querySelector('[data-testid="stPlotlyChart"]');
    if (!verdict || !caption || !chart) return null;
    return {live: main.textContent.includes('still training')};
}"""

# As tests/e2e/conftest.py's wait_idle: the "Running..." widget away for half a second.
IDLE_JS = """() => {
    const busy = document.querySelector('[data-testid="stStatusWidget"]');
    const now = Date.now();
    if (busy) { window.__benchIdleSince = null; return false; }
    window.__benchIdleSince = window.__benchIdleSince || now;
    return now - window.__benchIdleSince > 500;
}"""

EPOCH_TEXT = re.compile(r"Epoch (\d+) of \d+")
BATCH_TEXT = re.compile(r"Batch (\d+) of \d+")


# --- small helpers ---------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (``fraction`` 0.5 = median); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


async def launch_chromium(playwright, nice: int = 0):
    """Headless Chromium; with ``nice``, it and every process it starts run at that
    niceness: on a lower priority, taking only CPU the server and the training leave.
    Linux schedules each session's processes as one group (autogroup) and weighs groups
    by the group's own niceness, not its processes': Chromium gets a session of its own
    with that niceness."""
    executable = live.chromium_executable()
    if executable is None:
        raise SystemExit(live.CHROMIUM_MISSING)
    if nice:
        wrapper = Path(tempfile.mkdtemp(prefix="cnnlab-chromium-")) / "chromium"
        start = f'echo {nice} > /proc/self/autogroup; exec nice -n {nice} "$0" "$@"'
        wrapper.write_text(
            f'#!/bin/sh\nexec setsid -w sh -c {shlex.quote(start)} {shlex.quote(executable)} "$@"\n'
        )
        wrapper.chmod(0o755)
        executable = str(wrapper)
    return await playwright.chromium.launch(
        executable_path=executable, headless=True, args=CHROMIUM_FLAGS
    )


def workspace_env(env: dict, home: Path) -> dict:
    """``env`` pointing cnnlab, in this process too, at the workspace ``home``."""
    os.environ["CNNLAB_HOME"] = str(home)
    return {**env, "CNNLAB_HOME": str(home)}


def seed_workspace(root: Path, env: dict) -> Path:
    """A workspace holding the digits sample, ingested by the CLI; copied per use."""
    seed = root / "seed"
    seed.mkdir()
    run(
        [sys.executable, "-m", "cnnlab", "ingest", "sample:digits", "--name", "digits",
         "--json", "--no-progress"],
        workspace_env(env, seed),
    )  # fmt: skip
    return seed


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the server --------------------------------------------------------------------------


class Server(live.LiveServer):
    """The app's server (``scripts/serve.py``, i.e. ``streamlit run app.py`` with the
    pages' modules imported first) on the workspace ``home``, started at once."""

    def wait_healthy(self, timeout: float = 120.0) -> float:
        """Seconds from the start to the first 200 of /_stcore/health."""
        seconds = super().wait_healthy(timeout)
        if seconds is None:
            tail = self.log_text(3000)
            raise SystemExit(f"streamlit did not answer within {timeout:.0f} s; its log:\n{tail}")
        return seconds

    def rss(self, exclude: set[int]) -> int:
        """Resident bytes of the server and its children, except the pids ``exclude``."""
        try:
            server = psutil.Process(self.process.pid)
            processes = [server, *server.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        return sum(process_rss(p.pid) for p in processes if p.pid not in exclude)

    def descendants(self) -> set[int]:
        try:
            return {p.pid for p in psutil.Process(self.process.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            return set()


def process_rss(pid: int | None) -> int:
    try:
        return psutil.Process(pid).memory_info().rss if pid else 0
    except psutil.NoSuchProcess:
        return 0


# --- cold start --------------------------------------------------------------------------


async def cold_round(browser, home: Path, env: dict) -> dict:
    """One fresh server on ``home``; times it until the Data page is drawn."""
    server = Server(home, env)
    try:
        health_s = server.wait_healthy()
        context = await browser.new_context(viewport=VIEWPORT)
        try:
            page = await context.new_page()
            opened, opened_at = time.perf_counter(), time.time()
            await page.goto(server.url, wait_until="commit", timeout=PAGE_TIMEOUT_MS)
            drawn = await page.wait_for_function(
                DATA_PAGE_DRAWN_JS, polling=50, timeout=PAGE_TIMEOUT_MS
            )
            now = time.perf_counter()
            shown = await drawn.json_value()
        finally:
            await context.close()
    finally:
        server.stop()
    return {
        "health_s": round(health_s, 3),
        "content_s": round(now - opened, 3),
        "title_s": round(shown["title"] / 1000 - opened_at, 3),
        "sidebar_s": round(shown["sidebar"] / 1000 - opened_at, 3),
        "total_s": round(now - server.started, 3),
        "device_caption": shown["device"],
        "exceptions": shown["exceptions"],
    }


async def cold(seed: Path, root: Path, env: dict, rounds: int) -> dict:
    results = []
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright)  # started before the clock runs
        for index in range(rounds):
            home = root / f"cold-{index + 1}"
            shutil.copytree(seed, home)
            result = await cold_round(browser, home, workspace_env(env, home))
            log(f"cold round {index + 1}: {json.dumps(result)}")
            results.append(result)
        await browser.close()
    median = {
        key: round(statistics.median(r[key] for r in results), 3)
        for key in ("health_s", "content_s", "title_s", "sidebar_s", "total_s")
    }
    return {
        "rounds": results,
        **{f"{key}_median": value for key, value in median.items()},
        "target_s": CONTENT_TARGET_S,
        "meets_target": median["content_s"] <= CONTENT_TARGET_S,
    }


# --- training runs -----------------------------------------------------------------------


def train_model_run(env: dict) -> str:
    """A short completed run, so Predict has a model; returns its id."""
    result, _ = run([sys.executable, *TRAIN, "--epochs", "1", "--json", "--no-progress"], env)
    return result["run_id"]


def start_long_run(env: dict) -> str:
    """A run long enough to outlast the test, in the background; returns its id."""
    result, _ = run([sys.executable, *TRAIN, *LONG_RUN, "--json", "--no-progress"], env)
    return result["run_id"]


def run_info(run_id: str):
    from cnnlab import runs

    return runs.load_run(run_id)


async def first_epoch_done(run_id: str) -> None:
    """Wait until the run has finished its first epoch (which traces the model)."""
    deadline = time.monotonic() + FIRST_EPOCH_TIMEOUT_S
    while time.monotonic() < deadline:
        info = run_info(run_id)
        if any(event.get("type") == "epoch" for event in info.events()):
            return
        if info.status not in ("queued", "running"):
            tail = (info.path / "worker.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"run {run_id} ended {info.status} before its first epoch:\n{tail}")
        await asyncio.sleep(0.25)
    raise SystemExit(f"run {run_id} did not finish an epoch in {FIRST_EPOCH_TIMEOUT_S} s")


def worker_pid(run_id: str) -> int | None:
    return (run_info(run_id).meta.get("worker") or {}).get("pid")


def cancel(run_id: str, env: dict) -> None:
    """Cancel the run (if still active) and wait for its worker process to exit."""
    pid = worker_pid(run_id)
    log(f"$ python -m cnnlab cancel {run_id} --wait")
    subprocess.run(
        [sys.executable, "-m", "cnnlab", "cancel", run_id, "--wait", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if pid is None:
        return
    try:
        psutil.Process(pid).wait(timeout=60)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        psutil.Process(pid).kill()


def trained_batches(event: dict) -> int | None:
    """Batches trained since the run began, at a batch or epoch event."""
    if event.get("type") == "batch":
        return (event["epoch"] - 1) * event["batches"] + event["batch"]
    if event.get("type") == "epoch":
        return event["epoch"] * event["batches"]
    return None


def training_rate(events: list[dict], start: float, end: float) -> dict:
    """Images per wall-clock second between the first and last progress events in
    [start, end], and the median of the epochs' own images/s there."""
    starts = [e for e in events if e.get("type") == "start"]
    images_per_batch = starts[-1]["images"] / starts[-1]["batches"]
    points = [
        (e["time"], trained_batches(e))
        for e in events
        if start <= e["time"] <= end and trained_batches(e) is not None
    ]
    epoch_rates = [
        e["images_per_s"] for e in events if e.get("type") == "epoch" and start <= e["time"] <= end
    ]
    if len(points) < 2:
        raise SystemExit("the window saw fewer than two progress events: raise --seconds")
    (first_time, first), (last_time, last) = points[0], points[-1]
    return {
        "images_per_s": round((last - first) * images_per_batch / (last_time - first_time), 1),
        "epoch_images_per_s": rounded(statistics.median(epoch_rates) if epoch_rates else None, 1),
        "epochs": len(epoch_rates),
    }


# --- memory -------------------------------------------------------------------------------


@dataclass
class Usage:
    """While sampling: the peak RSS of the server (without the worker) and of the
    worker, and the CPU seconds of each group of processes ("browser" is Playwright's
    driver and Chromium; "other" is everything else on the machine)."""

    server: Server
    worker: int | None
    server_bytes: int = 0
    worker_bytes: int = 0
    cpu_s: dict = field(default_factory=dict)

    def groups(self) -> dict[int, str]:
        """pid -> group, for the server, the worker, this script and its children."""
        bench = psutil.Process()
        found = {p.pid: "browser" for p in bench.children(recursive=True)}
        found.update(
            {pid: "server" for pid in {self.server.process.pid, *self.server.descendants()}}
        )
        if self.worker:
            found[self.worker] = "worker"
        found[bench.pid] = "bench"
        return found

    def cpu_times(self) -> tuple[dict[int, tuple[str, float]], float]:
        """(pid -> (group, CPU seconds so far), busy CPU seconds of the whole machine)."""
        times = {}
        for pid, group in self.groups().items():
            try:
                used = psutil.Process(pid).cpu_times()
            except psutil.NoSuchProcess:
                continue
            times[pid] = (group, used.user + used.system)
        machine = psutil.cpu_times()
        return times, sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)

    def sample(self) -> None:
        exclude = {self.worker} if self.worker else set()
        self.server_bytes = max(self.server_bytes, self.server.rss(exclude))
        self.worker_bytes = max(self.worker_bytes, process_rss(self.worker))

    async def sample_for(self, seconds: float) -> None:
        before, machine_before = self.cpu_times()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sample()
            await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        after, machine_after = self.cpu_times()
        used = dict.fromkeys(("server", "worker", "browser", "bench"), 0.0)
        for pid, (group, seconds_so_far) in after.items():
            start = before.get(pid, (group, 0.0))[1]
            used[group] += seconds_so_far - start
        used["other"] = max(0.0, machine_after - machine_before - sum(used.values()))
        self.cpu_s = {group: round(value, 1) for group, value in used.items()}

    def to_dict(self) -> dict:
        return {
            "server_peak_rss_mb": round(self.server_bytes / MB),
            "worker_peak_rss_mb": round(self.worker_bytes / MB),
            "cpu_s": self.cpu_s,
        }


def worker_parent(pid: int | None) -> str:
    try:
        parent = psutil.Process(pid).parent() if pid else None
    except psutil.NoSuchProcess:
        return "unknown (the worker had exited)"
    return f"pid {parent.pid} ({parent.name()})" if parent else "none"


# --- the pages under load ----------------------------------------------------------------


@dataclass
class Tally:
    """What the uploaders saw: per prediction (wall time started, seconds to redraw
    after removing the previous file, latency s, on the live run), error texts, and
    Playwright timeouts."""

    predictions: list[tuple[float, float, float, bool]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    timeouts: list[str] = field(default_factory=list)


async def open_tab(browser, url: str, ready: str):
    """A new context with ``url`` open, once the selector ``ready`` or an error shows."""
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    await page.goto(url, timeout=OPEN_TIMEOUT_MS)
    try:
        await ready_or_error(page, ready, OPEN_TIMEOUT_MS)
    except PlaywrightTimeout:
        shown = await page.locator("[data-testid='stMain']").inner_text(timeout=5_000)
        raise SystemExit(
            f"{url} did not show {ready!r} within {OPEN_TIMEOUT_MS / 1000:.0f} s; "
            f"it shows:\n{shown[:2000]}"
        ) from None
    return page


async def ready_or_error(page, ready: str, timeout: float = PAGE_TIMEOUT_MS) -> None:
    await page.locator(ready).or_(page.locator(ERRORS)).first.wait_for(timeout=timeout)


async def shown_error(page) -> str | None:
    """The first exception or error box the page shows, if any."""
    errors = page.locator(ERRORS)
    return (await errors.first.inner_text())[:300] if await errors.count() else None


async def open_watcher(browser, url: str):
    page = await open_tab(browser, f"{url}/train", PROGRESS_BARS)
    await page.evaluate(RECORDER_JS, [PROGRESS_BARS, ERRORS])
    return page


async def wait_idle(page) -> None:
    await page.evaluate("() => { window.__benchIdleSince = null; }")  # from now on
    await page.wait_for_function(IDLE_JS, polling=100)


async def clear_upload(page) -> str | None:
    """Remove the uploaded file(s), as a user does before the next one; returns the
    error the page shows instead of its empty uploader, if any."""
    remove = page.locator("[data-testid='stFileChipDeleteBtn'] button")
    while await remove.count():
        await remove.first.click()
        await ready_or_error(page, PREDICT_READY)
    await wait_idle(page)
    return await shown_error(page)


async def predict_once(page, name: str, data: bytes, timeout: float) -> tuple[float, dict]:
    """Upload one PNG; returns (seconds until its result shows, the result)."""
    upload = page.locator("[data-testid='stFileUploader'] input[type='file']")
    started = time.perf_counter()
    await upload.set_input_files(files=[{"name": name, "mimeType": "image/png", "buffer": data}])
    shown = await page.wait_for_function(RESULT_JS, arg=[name, ERRORS], polling=50, timeout=timeout)
    latency = time.perf_counter() - started
    result = await shown.json_value()
    await wait_idle(page)
    return latency, result


async def upload_loop(
    page, url: str, index: int, images: list, stop: asyncio.Event, tally, think_s: float
):
    """Predict ``images`` one after another until ``stop`` is set, ``think_s`` seconds
    after each result (a person looking at it); after an error or a timeout, start over
    in a new session of the page."""
    count = 0
    while not stop.is_set():
        label, data = images[count % len(images)]
        name = f"upload-{index}-{count}-digit-{label}.png"
        count += 1
        try:
            removing = time.perf_counter()
            error = await clear_upload(page)
            remove_s = time.perf_counter() - removing
            if error is None:
                started = time.time()
                # The first loads TensorFlow and the model in the server: more time.
                timeout = OPEN_TIMEOUT_MS if count == 1 else PAGE_TIMEOUT_MS
                latency, result = await predict_once(page, name, data, timeout)
                error = result.get("error")
        except PlaywrightTimeout as timeout_error:
            tally.timeouts.append(f"uploader {index}: {str(timeout_error).splitlines()[0]}")
            await reopen(page, f"{url}/predict", tally, index)
            continue
        if error is not None:
            tally.errors.append(f"uploader {index}: {error}")
            await reopen(page, f"{url}/predict", tally, index)
            continue
        tally.predictions.append((started, remove_s, latency, result["live"]))
        if think_s:
            try:
                await asyncio.wait_for(stop.wait(), think_s)
            except TimeoutError:
                pass


async def reopen(page, url: str, tally: Tally, index: int) -> None:
    """A new session of the page (after a failure)."""
    try:
        await page.goto(url)
        await ready_or_error(page, PREDICT_READY)
    except PlaywrightTimeout as error:
        tally.timeouts.append(f"uploader {index} reopening: {str(error).splitlines()[0]}")


def unseen_digits(limit: int = 200) -> list[tuple[str, bytes]]:
    """(label, PNG bytes) of the digits test split: images the model has not seen."""
    from cnnlab.data.dataset import load_dataset

    dataset = load_dataset("digits")
    records = dataset.split("test")[:limit]
    return [(r.label, (dataset.path / r.file).read_bytes()) for r in records]


# --- freshness ----------------------------------------------------------------------------


def shown_batches(text: str, batches: int) -> int | None:
    """Batches trained as a watcher's bars show them ("Epoch e of E | Batch b of B")."""
    epoch = EPOCH_TEXT.search(text)
    if epoch is None:
        return None
    batch = BATCH_TEXT.search(text)
    done = int(batch.group(1)) if batch else 0
    # "Batch B of B" is the epoch's end, shown as the epoch once validation is done.
    return int(epoch.group(1)) * batches + (done if done < batches else 0)


def progress_updates(events: list[dict], start: float, end: float) -> list[tuple[float, int]]:
    """(time written, batches trained) of the progress events in [start, end] that a
    watcher should show; an epoch's last batch is the same progress as its epoch event."""
    updates = []
    for event in events:
        done = trained_batches(event)
        if done is None or not start <= event["time"] <= end:
            continue
        if event["type"] == "batch" and event["batch"] >= event["batches"]:
            continue
        updates.append((event["time"], done))
    return updates


def fresh_lags(updates: list, shown: list[tuple[float, int]], observed_until: float) -> list:
    """Seconds from each update being written to the watcher first showing it or later."""
    lags = []
    for written, done in updates:
        seen = next((moment for moment, progress in shown if progress >= done), observed_until)
        lags.append(max(0.0, seen - written))
    return lags


def watcher_stats(recordings: list[dict], events: list[dict], window: tuple, until: float):
    """Fresh-progress lags and redraw intervals over all watchers, and their errors."""
    start, end = window
    batches = next(e["batches"] for e in events if e.get("type") == "start")
    updates = progress_updates(events, start, end)
    lags, intervals, errors = [], [], []
    for index, recording in enumerate(recordings):
        if recording is None:
            errors.append(f"watcher {index}: its page reloaded (recording lost)")
            continue
        errors += [f"watcher {index}: {text}" for text in recording["errors"]]
        shown = [(ms / 1000, shown_batches(text, batches)) for ms, text in recording["changes"]]
        shown = [(moment, done) for moment, done in shown if done is not None]
        lags += fresh_lags(updates, shown, until)
        moments = [moment for moment, _ in shown if start <= moment <= end]
        intervals += [later - earlier for earlier, later in pairwise(moments)]
    return lags, intervals, errors, len(updates)


# --- the load test ------------------------------------------------------------------------


async def baseline(env: dict, server: Server, seconds: float) -> dict:
    """A long run training for ``seconds`` after its first epoch, nobody watching."""
    run_id = start_long_run(env)
    try:
        await first_epoch_done(run_id)
        usage = Usage(server, worker_pid(run_id))
        start = time.time()
        log(f"baseline: training {seconds:.0f} s with no viewers")
        await usage.sample_for(seconds)
        end = time.time()
        rate = training_rate(run_info(run_id).events(), start, end)
    finally:
        cancel(run_id, env)
    return {"run_id": run_id, **rate, **usage.to_dict()}


async def under_load(args, env: dict, server: Server) -> dict:
    """The same run while watchers and uploaders use the app."""
    images = unseen_digits()
    run_id = start_long_run(env)
    try:
        async with async_playwright() as playwright:
            browser = await launch_chromium(playwright, args.browser_nice)
            log(f"opening {args.watchers} watcher and {args.uploaders} uploader tabs")
            watchers = await asyncio.gather(
                *(open_watcher(browser, server.url) for _ in range(args.watchers))
            )
            uploaders = await asyncio.gather(
                *(open_tab(browser, f"{server.url}/predict", PREDICT_READY)
                  for _ in range(args.uploaders))
            )  # fmt: skip
            tally, stop = Tally(), asyncio.Event()
            tasks = [
                asyncio.create_task(
                    upload_loop(
                        page, server.url, i, images[i :: args.uploaders], stop, tally, args.think_s
                    )
                )
                for i, page in enumerate(uploaders)
            ]
            await first_epoch_done(run_id)
            await warmed_up(tally, args.uploaders)  # the model loaded once per uploader
            worker = worker_pid(run_id)
            usage = Usage(server, worker)
            start = time.time()
            log(f"load: {args.seconds:.0f} s of watching and predicting")
            await usage.sample_for(args.seconds)
            end = time.time()
            stop.set()
            await asyncio.gather(*tasks)  # each finishes its upload under way
            recordings = [
                await page.evaluate("() => window.__benchLog || null") for page in watchers
            ]
            until = time.time()
            parent, in_tree = worker_parent(worker), worker in server.descendants()
            await browser.close()
        events = run_info(run_id).events()
    finally:
        cancel(run_id, env)
    return summarise_load(run_id, tally, recordings, events, (start, end), until) | {
        **training_rate(events, start, end),
        **usage.to_dict(),
        "worker_parent": parent,
        "worker_in_server_tree": in_tree,
    }


async def warmed_up(tally: Tally, uploaders: int, timeout: float = 600.0) -> None:
    """Wait until there have been as many predictions (or failures) as uploaders."""
    deadline = time.monotonic() + timeout
    while len(tally.predictions) + len(tally.timeouts) + len(tally.errors) < uploaders:
        if time.monotonic() > deadline:
            raise SystemExit(f"no prediction on the Predict page within {timeout:.0f} s")
        await asyncio.sleep(0.25)


def summarise_load(run_id, tally: Tally, recordings, events, window, until) -> dict:
    start, end = window
    lags, intervals, watcher_errors, updates = watcher_stats(recordings, events, window, until)
    timed = [p for p in tally.predictions if start <= p[0] <= end]
    removes = [remove_s for _, remove_s, _, _ in timed]
    latencies = [latency for _, _, latency, _ in timed]
    errors = watcher_errors + tally.errors
    return {
        "run_id": run_id,
        "window_s": round(end - start, 1),
        "progress_updates": updates,
        "fresh_lag_p50_s": rounded(percentile(lags, 0.5)),
        "fresh_lag_p95_s": rounded(percentile(lags, 0.95)),
        "fresh_lag_max_s": rounded(max(lags, default=None)),
        "redraw_interval_p50_s": rounded(percentile(intervals, 0.5)),
        "redraw_interval_p95_s": rounded(percentile(intervals, 0.95)),
        "predictions": len(latencies),
        "predictions_total": len(tally.predictions),
        "predictions_on_live_run": sum(live for _, _, _, live in timed),
        "predict_p50_s": rounded(percentile(latencies, 0.5)),
        "predict_p95_s": rounded(percentile(latencies, 0.95)),
        "remove_p50_s": rounded(percentile(removes, 0.5)),
        "remove_p95_s": rounded(percentile(removes, 0.95)),
        "page_errors": len(errors),
        "timeouts": len(tally.timeouts),
        "errors": len(errors) + len(tally.timeouts),
        "error_messages": (errors + tally.timeouts)[:20],
    }


async def load(args, seed: Path, root: Path, env: dict) -> dict:
    home = root / "load"
    shutil.copytree(seed, home)
    env = workspace_env(env, home)
    server = Server(home, env)
    try:
        server.wait_healthy()
        model_run = train_model_run(env)
        quiet = await baseline(env, server, args.seconds)
        loaded = await under_load(args, env, server)
    finally:
        server.stop()
    ratio = loaded["images_per_s"] / quiet["images_per_s"]
    return {
        "seconds": args.seconds,
        "watchers": args.watchers,
        "uploaders": args.uploaders,
        "think_s": args.think_s,
        "browser_nice": args.browser_nice,
        "model_run_id": model_run,
        "baseline": quiet,
        **loaded,
        "baseline_images_per_s": quiet["images_per_s"],
        "load_images_per_s": loaded["images_per_s"],
        "throughput_ratio": round(ratio, 3),
        "ratio_target": THROUGHPUT_TARGET,
        "meets_target": ratio >= THROUGHPUT_TARGET and loaded["errors"] == 0,
    }


# --- report -------------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def seconds_pair(first: float | None, second: float | None) -> str:
    def text(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    return f"{text(first)} / {text(second)}"


def print_cold(result: dict) -> None:
    rounds = result["rounds"]
    print(f"\ncold start: {len(rounds)} round(s), a fresh server and workspace each")
    print(f"{'':48}{'median':>8}   rounds")
    for key, title in (
        ("health_s", "server start -> /_stcore/health (s)"),
        ("content_s", "open URL -> Data page drawn (s)"),
        ("title_s", "  open URL -> h1 'Data' shown (s)"),
        ("sidebar_s", "  open URL -> sidebar's Dataset box shown (s)"),
        ("total_s", "server start -> Data page drawn (s)"),
    ):
        each = " ".join(f"{r[key]:.2f}" for r in rounds)
        print(f"  {title:46}{result[f'{key}_median']:>8.2f}   {each}")
    print("  sidebar when drawn: " + "; ".join(r["device_caption"] for r in rounds))
    print(
        f"  target: Data page drawn within {result['target_s']:.0f} s of the server "
        f"answering: {verdict(result['meets_target'])}"
    )


CPU_GROUPS = {
    "worker": "the training worker",
    "server": "streamlit and its children",
    "browser": "Chromium and Playwright's driver",
    "bench": "this script",
    "other": "the rest of the machine (should be near 0)",
}


def print_load(result: dict) -> None:
    base = result["baseline"]
    print(
        f"\nload: {result['window_s']:.0f} s, {result['watchers']} watcher(s) on /train, "
        f"{result['uploaders']} uploader(s) on /predict "
        f"({result['think_s']:g} s between a result and the next upload"
        + (f"; Chromium at nice {result['browser_nice']}" if result["browser_nice"] else "")
        + "); "
        f"{os.cpu_count()} cores, so "
        f"{result['window_s'] * os.cpu_count():.0f} CPU seconds in the window"
    )
    rows = [
        ("fresh progress lag p50 / p95 (s)",
         seconds_pair(result["fresh_lag_p50_s"], result["fresh_lag_p95_s"]),
         f"{result['progress_updates']} updates x {result['watchers']} watchers, "
         f"max {result['fresh_lag_max_s']} s"),
        ("shown progress changes every p50 / p95 (s)",
         seconds_pair(result["redraw_interval_p50_s"], result["redraw_interval_p95_s"]), ""),
        ("prediction latency p50 / p95 (s)",
         seconds_pair(result["predict_p50_s"], result["predict_p95_s"]),
         f"{result['predictions']} predictions, {result['predictions_on_live_run']} on the "
         "training run's model"),
        ("  page redrawn after removing a file p50 / p95",
         seconds_pair(result["remove_p50_s"], result["remove_p95_s"]),
         "before each upload, not in the latency"),
        ("errors (on the pages + timeouts)",
         f"{result['errors']} ({result['page_errors']} + {result['timeouts']})",
         f"target 0: {verdict(result['errors'] == 0)}"),
        ("training images/s: no viewers / load",
         f"{base['images_per_s']:.0f} / {result['images_per_s']:.0f}",
         f"ratio {result['throughput_ratio']:.2f}, target >= {THROUGHPUT_TARGET}: "
         f"{verdict(result['throughput_ratio'] >= THROUGHPUT_TARGET)}"),
        ("  per epoch, training steps only",
         f"{base['epoch_images_per_s'] or 0:.0f} / {result['epoch_images_per_s'] or 0:.0f}",
         f"{base['epochs']} / {result['epochs']} epochs"),
        ("server peak RSS, no viewers / load (MB)",
         f"{base['server_peak_rss_mb']} / {result['server_peak_rss_mb']}", ""),
        ("worker peak RSS, no viewers / load (MB)",
         f"{base['worker_peak_rss_mb']} / {result['worker_peak_rss_mb']}",
         f"worker's parent {result['worker_parent']}, in the server's tree: "
         f"{result['worker_in_server_tree']}"),
        *((f"CPU seconds of {group}, no viewers / load",
           f"{base['cpu_s'][group]:.0f} / {result['cpu_s'][group]:.0f}", CPU_GROUPS[group])
          for group in CPU_GROUPS),
    ]  # fmt: skip
    for title, value, note in rows:
        print(f"  {title:46}{value:>14}   {note}")
    for message in result["error_messages"]:
        print(f"  error: {message}")


async def bench(args, root: Path, env: dict) -> dict:
    seed = seed_workspace(root, env)
    summary = {}
    if args.only in (None, "cold"):
        summary["cold"] = await cold(seed, root, env, args.rounds)
    if args.only in (None, "load"):
        summary["load"] = await load(args, seed, root, env)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("cold", "load"), help="run one part (default both)")
    parser.add_argument("--rounds", type=int, default=3, help="cold starts")
    parser.add_argument("--seconds", type=float, default=120.0, help="length of each window")
    parser.add_argument("--watchers", type=int, default=10, help="tabs watching /train")
    parser.add_argument("--uploaders", type=int, default=3, help="tabs predicting on /predict")
    parser.add_argument(
        "--think-s", type=float, default=0.0,
        help="seconds each uploader looks at a result before the next upload (default 0: "
        "back to back, the worst case)",
    )  # fmt: skip
    parser.add_argument(
        "--browser-nice", type=int, default=0,
        help="run Chromium at this niceness (e.g. 19): the tabs then take only CPU the "
        "server and the training leave, standing in for the visitors' own machines",
    )  # fmt: skip
    add_common_args(parser)
    args = parser.parse_args()
    with bench_workspace(args.keep) as (root, env):
        summary = asyncio.run(bench(args, root, env))
        if args.keep:
            log(f"workspace kept: {root}")
    if "cold" in summary:
        print_cold(summary["cold"])
    if "load" in summary:
        print_load(summary["load"])
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
