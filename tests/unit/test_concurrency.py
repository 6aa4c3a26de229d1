"""Several sessions at once: the queue's order, one worker per run, datasets in use,
parallel decoding, and one cached Predictor serving many threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cnnlab import runs, workspace
from cnnlab.data import decode as decoding
from cnnlab.data.dataset import list_datasets, load_dataset
from cnnlab.data.ingest import delete_class, delete_dataset
from cnnlab.errors import CnnlabError
from cnnlab.train import jobs
from cnnlab.train.spec import TrainSpec
from tests.unit.test_predict import png_bytes, random_pixels, save_model_run

RUN = "20260101-000000-tiny-simple-{}"
CREATED = "2026-01-01T00:00:00+00:00"


def _make_run(suffix: str, status: str = "queued", **meta) -> runs.Run:
    return runs.create_run(
        {
            "run_id": RUN.format(suffix),
            "dataset": "tiny",
            "status": status,
            "created": CREATED,
            "train": TrainSpec(image_size=24, batch_size=8, epochs=2).to_dict(),
            **meta,
        }
    )


@pytest.fixture
def launches(monkeypatch) -> list[str]:
    """The run ids whose worker would have been launched (no process is started)."""
    launched: list[str] = []
    monkeypatch.setattr(jobs, "_launch_worker", launched.append)
    return launched


# --- 1. the queue's order --------------------------------------------------------------


def test_runs_queued_at_the_same_moment_do_not_wait_for_each_other(workspace):
    same_moment = 1_767_225_600.0
    first, second = (_make_run(s, queued_at=same_moment) for s in ("aaaa", "bbbb"))
    ahead = {
        info.run_id: jobs.QueueSlot(info.run_id, same_moment).position()[0]
        for info in (first, second)
    }
    # Exactly one of them is first (with the default limit of 1 both waited forever).
    assert sorted(ahead.values()) == [0, 1]
    # ... and it is the one the queue shows first.
    assert ahead[runs.active_runs()[0].run_id] == 0
    assert [row["position"] for row in jobs.queue()] == [0, 1]


# --- 2. one worker per run -------------------------------------------------------------


def _completed_run_with_checkpoint() -> runs.Run:
    info = _make_run("cccc", status="completed")
    (info.path / "last.keras").write_bytes(b"model")
    workspace.atomic_write_json(info.path / runs.CHECKPOINTS_FILE, {"last": {"epoch": 2}})
    return info


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(lambda: (_make_run("cccc", "cancelled"), jobs.resume_run), id="resume"),
        pytest.param(
            lambda: (_completed_run_with_checkpoint(), lambda run_id: jobs.continue_run(run_id, 1)),
            id="continue",
        ),
    ],
)
def test_two_clicks_at_once_start_one_worker(tiny_dataset, launches, monkeypatch, action):
    info, requeue = action()
    # Both sessions read the run's status at the same moment, when nothing serialises
    # them (a lock makes the first read time out here, and the second read come after).
    both_read = threading.Barrier(2, timeout=2)
    load_run = runs.load_run

    def load_run_together(run_id):
        try:
            both_read.wait()
        except threading.BrokenBarrierError:
            pass
        return load_run(run_id)

    monkeypatch.setattr(runs, "load_run", load_run_together)
    outcomes: list[str] = []

    def click():
        try:
            outcomes.append(requeue(info.run_id))
        except CnnlabError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert launches == [info.run_id]
    assert info.run_id in outcomes
    (refusal,) = [text for text in outcomes if text != info.run_id]
    assert f"Run {info.run_id} is already queued" in refusal
    assert "cancel" in refusal


def test_a_queued_run_cannot_be_resumed_again(tiny_dataset, launches):
    info = _make_run("dddd", status="interrupted")
    jobs.resume_run(info.run_id)
    with pytest.raises(CnnlabError, match=r"is already queued; .*one worker"):
        jobs.resume_run(info.run_id)
    assert launches == [info.run_id]


# --- 3. datasets in use ------------------------------------------------------------------


def test_a_dataset_in_use_cannot_be_deleted(tiny_dataset):
    queued = _make_run("eeee")
    running = _make_run("ffff", status="running")
    _make_run("0000", status="completed")
    with pytest.raises(CnnlabError) as refused:
        delete_dataset("tiny")
    message = str(refused.value)
    assert queued.run_id in message and running.run_id in message
    assert "cancel" in message and "wait" in message
    assert RUN.format("0000") not in message  # a finished run holds nothing
    assert "tiny" in list_datasets()
    # Deleting a class makes a new version: the runs keep theirs, files included.
    delete_class("tiny", "cat")
    assert "cat" in load_dataset("tiny", 1).class_names
    runs.update_run(queued.run_id, status="cancelled")
    runs.update_run(running.run_id, status="failed")
    delete_dataset("tiny")
    assert "tiny" not in list_datasets()


def test_a_run_cannot_start_on_a_dataset_deleted_meanwhile(tiny_dataset, launches, monkeypatch):
    prepare_run = jobs.prepare_run

    def prepare_then_lose_the_dataset(*args, **kwargs):
        meta = prepare_run(*args, **kwargs)
        delete_dataset("tiny")  # another session, between preparing and queuing
        return meta

    monkeypatch.setattr(jobs, "prepare_run", prepare_then_lose_the_dataset)
    spec = {"image_size": 24, "batch_size": 8, "epochs": 1, "augmentation": "none"}
    with pytest.raises(CnnlabError, match="tiny"):
        jobs.start_run("tiny", "simple", spec)
    assert runs.list_runs() == [] and launches == []


# --- 4. decoding in parallel -----------------------------------------------------------


def test_a_slow_decode_does_not_hold_up_another_thread(monkeypatch):
    slow_data = png_bytes(random_pixels(seed=1))
    quick_data = png_bytes(random_pixels(seed=2))
    slow_started, quick_done, release = threading.Event(), threading.Event(), threading.Event()
    normalise = decoding._normalise

    def normalise_slowly(image, data, **kwargs):
        if data is slow_data:  # stays inside the decode until the test lets it go
            slow_started.set()
            release.wait(timeout=10)
        return normalise(image, data, **kwargs)

    monkeypatch.setattr(decoding, "_normalise", normalise_slowly)
    results = {}
    slow = threading.Thread(target=lambda: results.update(slow=decoding.decode(slow_data)))
    slow.start()
    assert slow_started.wait(timeout=10)

    def decode_quickly():
        results["quick"] = decoding.decode(quick_data)
        quick_done.set()

    quick = threading.Thread(target=decode_quickly)
    quick.start()
    # The slow decode is still inside (it leaves on release): the quick one must finish.
    overlapped = quick_done.wait(timeout=10)
    release.set()
    slow.join(timeout=30)
    quick.join(timeout=30)
    assert overlapped, "the second decode waited for the first to finish"
    assert results["slow"].image.size == results["quick"].image.size == (40, 30)


# --- 5. one Predictor, many threads ------------------------------------------------------


def test_one_predictor_serves_many_threads_correctly(workspace):
    import keras

    from cnnlab.predict import Predictor

    predictor = Predictor(save_model_run()).load()
    # Some images at the model's size, some resized inside the graph.
    images = [
        png_bytes(random_pixels(height=side, width=side, seed=seed))
        for seed, side in enumerate((24, 24, 31, 40, 57, 24))
    ]
    expected = [predictor.predict_bytes(data).probabilities for data in images]
    assert not all(np.allclose(expected[0], row) for row in expected[1:])  # images differ
    errors: list[BaseException] = []
    wrong: list[tuple[int, int]] = []
    stop = threading.Event()

    def session(index: int) -> None:
        try:
            for attempt in range(15):
                if index % 2:
                    got = predictor.predict_many([("x", images[index])])[0].probabilities
                else:
                    got = predictor.predict_bytes(images[index]).probabilities
                if not np.allclose(got, expected[index], atol=1e-6):
                    wrong.append((index, attempt))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def streamlit_after_each_script_run() -> None:
        # What Streamlit's script runner does after every rerun of any session.
        while not stop.is_set():
            keras.backend.clear_session(free_memory=False)
            predictor.warm_up()

    clearer = threading.Thread(target=streamlit_after_each_script_run)
    clearer.start()
    threads = [threading.Thread(target=session, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stop.set()
    clearer.join(timeout=60)
    assert not errors, errors
    assert not wrong, f"(thread, attempt) pairs with another thread's result: {wrong}"


# The spoilt first load's symptom (layers that lost track of their variables).
@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_a_load_spoilt_by_a_keras_reset_is_done_again(workspace, monkeypatch):
    """A ``clear_session`` that lands while a Predictor is being loaded wipes the Keras
    scopes the loading thread is inside (a layer then ends up without its variables)."""
    from keras.src.backend.common import global_state
    from keras.src.utils import tracking

    from cnnlab import predict
    from cnnlab.predict import Predictor

    run_id = save_model_run()
    data = png_bytes(random_pixels(seed=3))
    expected = Predictor(run_id).load().predict_bytes(data).probabilities
    loads = {"started": 0, "cleared": 0}
    load_keras_model, enter = predict.load_keras_model, tracking.DotNotTrackScope.__enter__

    def load_counted(*args):
        loads["started"] += 1
        return load_keras_model(*args)

    def enter_then_another_thread_clears(scope):
        enter(scope)
        if loads["started"] == 1:  # all through the first load
            loads["cleared"] += 1
            # Keras' own function, past any waiting cnnlab puts in front of it.
            other = threading.Thread(target=global_state.clear_session, args=(False,))
            other.start()
            other.join()

    monkeypatch.setattr(predict, "load_keras_model", load_counted)
    monkeypatch.setattr(tracking.DotNotTrackScope, "__enter__", enter_then_another_thread_clears)
    predictor = Predictor(run_id).load()
    assert loads["cleared"] > 0 and loads["started"] == 2
    np.testing.assert_allclose(predictor.predict_bytes(data).probabilities, expected, atol=1e-6)


def test_streamlits_keras_reset_waits_for_a_load_in_progress(workspace, monkeypatch):
    """What Streamlit calls after each script run, ``keras.backend.clear_session()``,
    from another session's thread while a Predictor loads: it waits for the load."""
    import keras
    from keras.src.utils import tracking

    from cnnlab.predict import Predictor

    run_id = save_model_run()
    Predictor(run_id).load()
    cleared = threading.Event()
    during_the_load: list[bool] = []
    enter = tracking.DotNotTrackScope.__enter__

    def streamlit_clears():
        keras.backend.clear_session()
        cleared.set()

    other = threading.Thread(target=streamlit_clears)

    def enter_while_another_session_ends_its_run(scope):
        enter(scope)
        if not other.is_alive() and not cleared.is_set():
            other.start()
            cleared.wait(timeout=2)  # returns at once when nothing holds the clear back
        during_the_load.append(cleared.is_set())

    monkeypatch.setattr(
        tracking.DotNotTrackScope, "__enter__", enter_while_another_session_ends_its_run
    )
    Predictor(run_id).load()
    monkeypatch.undo()
    other.join(timeout=30)
    assert cleared.is_set()  # it did run, once the load was done
    assert not any(during_the_load)


def test_streamlits_keras_reset_collects_garbage_only_after_a_build(workspace, monkeypatch):
    """Streamlit clears Keras after every script run of every session. Keras' clear runs
    a full ``gc.collect()`` by default: 50-100 ms with TensorFlow loaded, which with ten
    sessions watching a run took over half the server's CPU. Through the gate, a clear
    with no arguments collects only when a model was built since the last clear; one
    that asks for it explicitly always collects."""
    import gc

    import keras

    from cnnlab.predict import Predictor, gate_clear_session

    run_id = save_model_run()
    gate_clear_session()
    collections: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(1) or 0)

    def collected(clear) -> bool:
        before = len(collections)
        clear()
        return len(collections) > before

    keras.backend.clear_session()
    assert not collected(keras.backend.clear_session)  # nothing built since
    assert not collected(keras.utils.clear_session)
    Predictor(run_id).load()
    assert collected(keras.backend.clear_session)
    assert not collected(keras.backend.clear_session)
    assert collected(lambda: keras.backend.clear_session(free_memory=True))
