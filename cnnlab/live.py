"""A training run's progress as the Train page shows it, served as JSON for the
browsers watching it.

The Train page draws a run's bars and numbers from :func:`progress_view`; while the run
trains, each watching browser then asks the app's server for the same view every
second (``GET /api/runs/<run_id>/progress?token=...``, the route of :func:`routes`,
mounted by ``scripts/serve.py``) and updates those few elements in place. A redraw of
a Streamlit page costs each browser a re-render of the page and the server a script
run; this costs both a small fetch, so ten people can watch a run without slowing it.

The token, an HMAC of the run id with a key made when the server starts, is handed out
only by a page that let the visitor in (a viewer password, when one is set, is asked
for before any page draws), so the route shows a run to no one the pages would not.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from typing import Any

from cnnlab import runs
from cnnlab.errors import CnnlabError
from cnnlab.train.progress import format_duration, run_progress

ROUTE = "/api/runs/{run_id}/progress"
# Reads of one run's folder for the route, however many browsers poll it.
FRESH_S = 0.5
_KEY = secrets.token_bytes(32)  # this server process's; tokens end with it
_served = threading.Event()


def token(run_id: str) -> str:
    """What a browser shows the route to read run ``run_id``'s progress."""
    return hmac.new(_KEY, run_id.encode(), hashlib.sha256).hexdigest()


def valid_token(run_id: str, given: str) -> bool:
    return hmac.compare_digest(token(run_id), given)


def progress_view(progress: dict[str, Any]) -> dict[str, Any]:
    """What the panel shows of ``progress`` (a :func:`run_progress`): the epoch bar,
    the batch bar while a batch count is known, and four numbers.

    ``order`` grows with the run's progress, so a browser can tell the newer of two
    views; ``active`` is false once the run is done and nothing will change.
    """
    status, epoch = progress["status"], progress["epoch"]
    epochs = progress["epochs"] or 1
    batch, batches = progress["batch"] or 0, progress["batches"]
    metrics, history = progress["metrics"], progress["history"]
    speed = progress["images_per_s"] or metrics.get("train_images_per_s")
    val = history.get("val_accuracy") or []
    test = metrics.get("test_accuracy")
    return {
        "run_id": progress["run_id"],
        "status": status,
        "active": status in runs.ACTIVE_STATUSES,
        "order": epoch * 1_000_000 + batch,
        "epoch": {"text": f"Epoch {epoch} of {epochs}", "fraction": min(1.0, epoch / epochs)},
        "batch": (
            {
                "text": f"Batch {batch} of {batches} (epoch {epoch + 1})",
                "fraction": min(1.0, batch / batches),
            }
            if status == "running" and batches
            else None
        ),
        "numbers": [
            ["ETA", format_duration(progress["eta_s"])],
            ["Images/s", f"{speed:,.0f}" if speed else "—"],
            ["Val accuracy", f"{val[-1]:.3f}" if val else "—"],
            ["Test accuracy", f"{test:.3f}" if test is not None else "—"],
        ],
    }


class _Recent:
    """Each run's view, read from its folder at most every FRESH_S seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._views: dict[str, tuple[float, dict]] = {}

    def view(self, run_id: str) -> dict[str, Any]:
        with self._lock:
            read_at, view = self._views.get(run_id, (-FRESH_S, None))
            if view is None or time.monotonic() - read_at >= FRESH_S:
                view = progress_view(run_progress(run_id))
                if len(self._views) > 64:
                    self._views.clear()
                self._views[run_id] = (time.monotonic(), view)
            return view


recent = _Recent()


def route_served() -> bool:
    """Whether this process's server answers the route (``scripts/serve.py``), so the
    Train page can leave its bars to the browsers; under ``streamlit run app.py`` or in
    tests it redraws them itself."""
    return _served.is_set()


def routes() -> list:
    """The route, for ``st.App(..., routes=routes())`` (Starlette, Streamlit's server)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def progress(request) -> JSONResponse:
        run_id = request.path_params["run_id"]
        if not valid_token(run_id, request.query_params.get("token", "")):
            return JSONResponse({"error": "not allowed: open the run on the Train page"}, 403)
        try:
            view = await run_in_threadpool(recent.view, run_id)
        except CnnlabError as error:  # no such run, or its folder cannot be read
            return JSONResponse({"error": str(error)}, 404)
        return JSONResponse(view, headers={"Cache-Control": "no-store"})

    _served.set()
    return [Route(ROUTE, progress, methods=["GET"])]
