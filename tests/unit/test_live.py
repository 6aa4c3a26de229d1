"""cnnlab.live: the run panel's view, and the route that serves it to browsers only
with the token a page handed out."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from starlette.applications import Starlette

from cnnlab import live
from cnnlab.train.progress import run_progress
from tests.conftest import make_dataset_on_disk
from tests.runs_fixture import prepared_run


@pytest.fixture(autouse=True)
def route_not_served_after(monkeypatch):
    """Mounting the route marks this process as serving it; the pages' tests that run
    in this process afterwards must not think so."""
    monkeypatch.setattr(live, "_served", threading.Event())


def get(path: str, token: str) -> tuple[int, dict]:
    """GET ``path?token=`` from an app holding only cnnlab.live's route."""
    app = Starlette(routes=live.routes())
    scope = {
        "type": "http", "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": f"token={token}".encode(), "headers": [],
        "server": ("test", 80), "client": ("test", 1),
    }  # fmt: skip
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return sent[0]["status"], json.loads(body)


def test_the_view_of_a_running_run(workspace):
    make_dataset_on_disk("tiny", {"cat": 10, "dog": 10}, splits=(6, 2, 2))
    run_id = prepared_run("tiny", status="running", epochs_done=1)
    view = live.progress_view(run_progress(run_id))
    assert view["active"] and view["status"] == "running"
    assert view["epoch"] == {"text": "Epoch 1 of 5", "fraction": 0.2}
    assert view["batch"] == {"text": "Batch 2 of 4 (epoch 2)", "fraction": 0.5}
    assert dict(view["numbers"]) == {
        "ETA": "30s", "Images/s": "345", "Val accuracy": "0.500", "Test accuracy": "—",
    }  # fmt: skip
    finished = live.progress_view(run_progress(prepared_run("tiny")))
    assert not finished["active"] and finished["batch"] is None
    assert finished["order"] > view["order"]  # 3 epochs done against 1


def test_the_route_answers_with_the_token_only(workspace):
    make_dataset_on_disk("tiny", {"cat": 10, "dog": 10}, splits=(6, 2, 2))
    run_id = prepared_run("tiny", status="running", epochs_done=1)
    path = live.ROUTE.format(run_id=run_id)

    status, view = get(path, live.token(run_id))
    assert status == 200 and view["batch"]["text"] == "Batch 2 of 4 (epoch 2)"
    other = prepared_run("tiny")
    assert get(path, live.token(other))[0] == 403  # another run's token
    assert get(path, "")[0] == 403
    assert get(live.ROUTE.format(run_id="nope"), live.token("nope"))[0] == 404
    assert live.route_served()  # the Train page leaves the bars to the browsers


def test_the_route_reads_a_run_folder_at_most_every_half_second(workspace, monkeypatch):
    make_dataset_on_disk("tiny", {"cat": 10, "dog": 10}, splits=(6, 2, 2))
    run_id = prepared_run("tiny", status="running", epochs_done=1)
    reads = []
    monkeypatch.setattr(live, "run_progress", lambda r: reads.append(r) or run_progress(r))
    monkeypatch.setattr(live, "recent", live._Recent())
    for _ in range(5):
        get(live.ROUTE.format(run_id=run_id), live.token(run_id))
    assert reads == [run_id]
