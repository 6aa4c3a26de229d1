"""Tuning studies: KerasTuner's oracles choose the parameters, every trial is a run.

A study lives in ``<workspace>/studies/<study id>/``: ``study.json`` (what it searches,
its budget and state), the oracle's own files (``oracle/``, KerasTuner's format, so a
study resumes where its oracle stopped) and the driver's log. Its trials are ordinary
runs, queued through :mod:`cnnlab.train.jobs` with ``tune`` = ``{"study", "trial",
"params", "objective"}`` in their ``run.json``: they are watched, evaluated, compared,
resumed and exported like any run, and each trial's run is found again by that field.

The driver (:func:`drive`) asks the oracle for trials while the budget lasts, keeps
one in flight per training slot (``CNNLAB_MAX_CONCURRENT_RUNS``), and reports each
finished run's score back. It holds the study's lock, so a study has one driver; a
driver that dies leaves the study ``interrupted``, and :func:`drive` on it again picks
up every trial where it was: a trial whose run is queued, running or finished is
attached again, an interrupted run is resumed from its checkpoint, and a trial the
oracle had handed out but never started is started. No trial is lost or run twice.

Reading a study (:func:`load_study`, :func:`list_studies`) reads JSON only: no
TensorFlow, no KerasTuner.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

import cnnlab
from cnnlab import runs, workspace
from cnnlab.errors import CnnlabError
from cnnlab.spec import Choice, Range
from cnnlab.tune.space import DEFAULT_SPACE, SearchSpace, load_space, trial_config

STUDY_FILE = "study.json"
ORACLE_DIR = "oracle"  # KerasTuner's project folder
DRIVER_LOCK = "driver.lock"
DRIVER_LOG = "driver.log"
CANCEL_FILE = "cancel"
TUNERS = ("random", "hyperband", "bayesian", "grid")
# Objective -> the direction that is better. Scores are read from the run's metrics
# (the validation split, never the test split, which stays for judging the result).
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min", "val_macro_f1": "max"}
OBJECTIVE_TITLES = {
    "val_accuracy": "validation accuracy",
    "val_loss": "validation loss",
    "val_macro_f1": "validation macro F1",
}
ACTIVE = ("running",)
FINISHED = ("completed", "cancelled", "failed")
# Limits of a study's settings, declared once (the Tune page's widgets use them).
MAX_TRIALS = Range(1, 200, integer=True)
BUDGET_MINUTES = Range(0.0, 1440.0)
EPOCHS = Range(1, 200, integer=True)
SEED = Range(0, 2**31 - 2, integer=True)  # the oracle's seed is this plus one
TUNER_CHOICE = Choice(TUNERS)
OBJECTIVE_CHOICE = Choice(tuple(OBJECTIVES))
HYPERBAND_FACTOR = 3
# Hyperband counts in rounds of at most 1/9 of a study's epochs: three brackets (9, 3, 1
# trials), whose shortest trials still train a few epochs. One epoch of a network
# trained from scratch says little about the next thirty.
HYPERBAND_ROUNDS = 9
POLL_S = 1.0
# Below this many minutes left, no new trial starts (it could not learn anything).
MIN_TRIAL_MINUTES = 0.5
TAG = "tune"


def studies_root() -> Path:
    path = workspace.home() / "studies"
    path.mkdir(parents=True, exist_ok=True)
    return path


def study_path(study_id: str) -> Path:
    return workspace.inside(studies_root(), workspace.safe_name(study_id, "study id"))


# --- reading studies ------------------------------------------------------------------


@dataclass
class Trial:
    """One trial: the oracle's id, its parameters, and the run that trains it."""

    trial: str
    params: dict[str, Any]
    run_id: str | None
    status: str  # the run's status, or "failed" when it never started
    score: float | None
    duration_s: float | None = None
    error: str | None = None
    epochs: int | None = None  # the epochs of training the trial stands for
    continues: str | None = None  # Hyperband: the trial whose weights it trained further

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "trial": self.trial,
            "status": self.status,
            "params": self.params,
            "score": self.score,
            "duration_s": self.duration_s,
            "error": self.error,
            "epochs": self.epochs,
            "continues": self.continues,
        }


@dataclass
class Study:
    """A study as its folder and its runs say it is."""

    study_id: str
    meta: dict[str, Any]
    status: str
    trials: list[Trial] = field(default_factory=list)

    @property
    def objective(self) -> str:
        return self.meta["objective"]

    @property
    def tuner(self) -> str:
        return self.meta["tuner"]

    @property
    def dataset(self) -> str:
        return self.meta["dataset"]

    @property
    def space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.meta["space"], self.meta.get("space_name", "custom"))

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.objective]

    def best(self) -> Trial | None:
        """The completed trial with the best score."""
        scored = [t for t in self.trials if t.status == "completed" and t.score is not None]
        if not scored:
            return None
        sign = -1 if self.direction == "max" else 1
        return min(scored, key=lambda t: (sign * t.score, t.trial))

    def duration_s(self) -> float:
        return float(self.meta.get("driven_s") or 0.0)

    def to_json(self) -> dict[str, Any]:
        """What ``cnnlab tune --json`` prints."""
        best = self.best()
        return {
            "study": self.study_id,
            "status": self.status,
            "dataset": self.dataset,
            "tuner": self.tuner,
            "objective": self.objective,
            "space": self.meta["space"],
            "trials": [trial.to_json() for trial in self.trials],
            "best": (
                {
                    "run_id": best.run_id,
                    "trial": best.trial,
                    "params": best.params,
                    "score": best.score,
                }
                if best
                else None
            ),
            "promoted": self.meta.get("promoted"),
            "error": self.meta.get("error"),
            "duration_s": round(self.duration_s(), 1),
        }


def trial_runs(study_id: str) -> dict[str, runs.Run]:
    """Trial id -> the run that trains it."""
    return {
        info.tune["trial"]: info
        for info in runs.list_runs()
        if info.tune.get("study") == study_id and "trial" in info.tune
    }


def score_of(info: runs.Run, objective: str) -> float | None:
    """A finished run's objective, from its metrics (None before it completes)."""
    if info.status != "completed":
        return None
    value = info.metrics().get(objective)
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def load_study(study_id: str) -> Study:
    """A study and its trials, read from its folder and its runs.

    Raises:
        CnnlabError: when there is no such study.
    """
    path = study_path(study_id)
    meta = workspace.read_json(path / STUDY_FILE)
    if not isinstance(meta, dict):
        known = ", ".join(list_studies()[:10]) or "none yet"
        raise CnnlabError(f"There is no tuning study {study_id!r} (studies: {known}).")
    status = meta.get("status", "running")
    if status in ACTIVE and not _driver_alive(meta):
        status = "interrupted"
    trials: list[Trial] = []
    found = trial_runs(study_id)
    for trial_id, info in sorted(found.items()):
        summary = info.summary()
        trials.append(
            Trial(
                trial=trial_id,
                params=dict(info.tune.get("params") or {}),
                run_id=info.run_id,
                status=info.status,
                score=score_of(info, meta["objective"]),
                duration_s=summary.get("duration_s"),
                error=info.error,
                epochs=info.tune.get("epochs"),
                continues=info.tune.get("continues"),
            )
        )
    for failed in meta.get("failed_trials") or []:
        if failed["trial"] not in found:
            trials.append(
                Trial(
                    failed["trial"], failed["params"], None, "failed", None, None, failed["error"]
                )
            )
    trials.sort(key=lambda t: t.trial)
    return Study(study_id, meta, status, trials)


def list_studies() -> list[str]:
    """Study ids, newest first."""
    found = []
    for path in studies_root().iterdir():
        meta = workspace.read_json(path / STUDY_FILE)
        if isinstance(meta, dict):
            found.append((meta.get("created", ""), path.name))
    return [name for _, name in sorted(found, reverse=True)]


def _driver_alive(meta: dict[str, Any]) -> bool:
    driver = meta.get("driver") or {}
    pid = driver.get("pid")
    return bool(pid) and runs.pid_alive(int(pid), driver.get("process_started"))


def _update(study_id: str, **fields: Any) -> dict[str, Any]:
    path = study_path(study_id) / STUDY_FILE
    with FileLock(path.with_suffix(".lock")):
        meta = workspace.read_json(path, default={}) or {}
        meta.update(fields)
        workspace.atomic_write_json(path, meta)
    return meta


# --- creating a study --------------------------------------------------------------------


def new_study(
    dataset: str,
    space: Any = None,
    tuner: str = "random",
    objective: str = "val_accuracy",
    max_trials: int = 10,
    budget_minutes: float = 0.0,
    epochs: int | None = None,
    seed: int = 0,
) -> str:
    """Write a new study's folder (nothing runs yet); returns its id.

    Every trial starts from the dataset's auto recipe (what a default run trains) with
    the trial's parameters applied, for ``epochs`` epochs (the recipe's when None; the
    longest trial's under Hyperband).

    Raises:
        CnnlabError: an unknown dataset, tuner or objective, a bad space or a setting
            out of its limits, or a grid search larger than ``max_trials``.
    """
    from cnnlab.data.dataset import load_dataset
    from cnnlab.train.recipe import plan_run

    TUNER_CHOICE.check("tuner", tuner)
    OBJECTIVE_CHOICE.check("objective", objective)
    MAX_TRIALS.check("max_trials", max_trials)
    SEED.check("seed", seed)
    budget_minutes = BUDGET_MINUTES.check("budget_minutes", budget_minutes)
    if epochs is not None:
        EPOCHS.check("epochs", epochs)
    search = load_space(space if space is not None else DEFAULT_SPACE)
    if tuner == "grid" and search.grid_size() > max_trials:
        raise CnnlabError(
            f"A grid search over this space has {search.grid_size()} trials, more than "
            f"max_trials={max_trials}. Raise max_trials, or list fewer values."
        )
    data = load_dataset(dataset)
    plan = plan_run(data)
    base_spec = plan.spec.with_changes(budget_minutes=0.0)
    epochs = int(epochs or base_spec.epochs)
    # Each trial must be a valid run: check the corners of the space now, not in trial 7.
    trial_config(plan.arch, base_spec, _corner(search), data, epochs)
    study_id = f"tune-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"
    path = study_path(study_id)
    path.mkdir(parents=True)
    workspace.atomic_write_json(
        path / STUDY_FILE,
        {
            "study_id": study_id,
            "dataset": data.name,
            "space": search.to_dict(),
            "space_name": search.name,
            "tuner": tuner,
            "objective": objective,
            "max_trials": max_trials,
            "budget_minutes": budget_minutes,
            "epochs": epochs,
            "seed": seed,
            "base": {"arch": plan.arch.to_dict(), "train": base_spec.to_dict()},
            "created": runs.now_iso(),
            "status": "running",
            "driver": None,
            "driven_s": 0.0,
            "finished": None,
            "error": None,
            "failed_trials": [],
            "promoted": None,
            "versions": {"cnnlab": cnnlab.__version__},
        },
    )
    return study_id


def _corner(space: SearchSpace) -> dict[str, Any]:
    """The first value of every dimension: a trial the space can produce."""
    return {d.name: d.values[0] if d.values else d.low for d in space.dimensions}


def start_study(*args: Any, **kwargs: Any) -> str:
    """:func:`new_study`, then its driver in a detached process; returns the study id."""
    study_id = new_study(*args, **kwargs)
    launch_driver(study_id)
    return study_id


def launch_driver(study_id: str) -> int:
    """Start ``python -m cnnlab.tune.driver STUDY_ID`` detached; returns its pid."""
    pid = runs.spawn_detached("cnnlab.tune.driver", study_id, study_path(study_id) / DRIVER_LOG)
    # Recorded at once, so the study does not read "interrupted" while the driver imports.
    _update(study_id, status="running", driver=runs.worker_info(pid))
    return pid


def resume_study(study_id: str) -> str:
    """Start a new driver for an interrupted study (in the background).

    Raises:
        CnnlabError: when the study is running or has finished.
    """
    study = load_study(study_id)
    check_resumable(study)
    (study_path(study_id) / CANCEL_FILE).unlink(missing_ok=True)
    launch_driver(study_id)
    return study_id


def check_resumable(study: Study) -> None:
    if study.status == "running":
        raise CnnlabError(
            f"Study {study.study_id} is already running (driver pid "
            f"{(study.meta.get('driver') or {}).get('pid')}); a study has one driver."
        )
    if study.status != "interrupted":
        raise CnnlabError(
            f"Study {study.study_id} is {study.status}; only an interrupted study can be "
            "resumed. Start a new study to search again."
        )


def cancel_study(study_id: str) -> str:
    """Stop a study: no new trial starts and its queued or running trials are cancelled.

    An interrupted study (no driver) is cancelled at once, its active trials with it.
    """
    study = load_study(study_id)
    if study.status in FINISHED:
        raise CnnlabError(
            f"Study {study_id} is already {study.status}; there is nothing to cancel."
        )
    (study_path(study_id) / CANCEL_FILE).touch()
    if study.status == "interrupted":
        _cancel_trials(study_id)
        _update(study_id, status="cancelled", finished=runs.now_iso())
    return "cancelled"


def _cancel_trials(study_id: str) -> None:
    from cnnlab.train.jobs import cancel_run

    for info in trial_runs(study_id).values():
        if info.is_active:
            with contextlib.suppress(CnnlabError):  # it finished meanwhile
                cancel_run(info.run_id)


def delete_study(study_id: str) -> None:
    """Remove a study's folder once it has ended (its trials stay, as runs)."""
    study = load_study(study_id)
    if study.status not in FINISHED:
        raise CnnlabError(
            f"Study {study_id} is {study.status} and may go on; cancel it first "
            f"(`python -m cnnlab tune --cancel {study_id}`)."
        )
    workspace.remove_tree(study_path(study_id))


# --- driving a study -----------------------------------------------------------------------


def make_oracle(meta: dict[str, Any], folder: Path):
    """The KerasTuner oracle a study's settings ask for, reloaded when it has state."""
    import keras_tuner as kt

    space = SearchSpace.from_dict(meta["space"])
    tuner, objective = meta["tuner"], meta["objective"]
    common = {
        "objective": kt.Objective(objective, OBJECTIVES[objective]),
        "hyperparameters": space.hyperparameters(grid=tuner == "grid"),
        "allow_new_entries": False,
        "tune_new_entries": False,
        # A failed trial is reported as failed; the driver decides what is retried.
        "max_retries_per_trial": 0,
        "max_consecutive_failed_trials": 3,
    }
    seed = int(meta.get("seed") or 0) + 1  # KerasTuner takes 0 as "pick one at random"
    if tuner == "hyperband":
        oracle = kt.oracles.HyperbandOracle(
            max_epochs=hyperband_rounds(int(meta["epochs"])),
            factor=HYPERBAND_FACTOR,
            seed=seed,
            **common,
        )
    elif tuner == "bayesian":
        oracle = kt.oracles.BayesianOptimizationOracle(
            max_trials=int(meta["max_trials"]), seed=seed, **common
        )
    elif tuner == "grid":
        oracle = kt.oracles.GridSearchOracle(
            max_trials=int(meta["max_trials"]), seed=seed, **common
        )
    else:
        oracle = kt.oracles.RandomSearchOracle(
            max_trials=int(meta["max_trials"]), seed=seed, **common
        )
    oracle.verbose = 0
    oracle._set_project_dir(str(folder), ORACLE_DIR)
    if (folder / ORACLE_DIR / "oracle.json").exists():
        oracle.reload()  # its handed-out trials go to the retry queue: handed out again
    return oracle


def hyperband_rounds(epochs: int) -> int:
    """Hyperband's ``max_epochs``: the study's epochs in rounds (see HYPERBAND_ROUNDS)."""
    return min(epochs, HYPERBAND_ROUNDS)


def epochs_of(rounds: int, epochs: int) -> int:
    """The epochs ``rounds`` of Hyperband stand for in a study of ``epochs``."""
    return max(1, round(rounds * epochs / hyperband_rounds(epochs)))


@contextlib.contextmanager
def _driving(study_id: str) -> Iterator[None]:
    """Hold the study's driver lock; a second driver is refused."""
    lock = FileLock(study_path(study_id) / DRIVER_LOCK, blocking=False, fallback_to_soft=False)
    try:
        lock.acquire()
    except Timeout:
        raise CnnlabError(
            f"Study {study_id} already has a driver; a study is driven by one process. "
            f"Watch it with `python -m cnnlab tune --status {study_id}`."
        ) from None
    try:
        yield
    finally:
        lock.release()


class Driver:
    """Runs one study's search loop in this process (see the module's docstring)."""

    def __init__(self, study_id: str, on_event: Callable[[str], None] | None = None):
        self.study_id = study_id
        self.path = study_path(study_id)
        self.meta = load_study(study_id).meta
        self.say = on_event or (lambda message: None)
        # tuner id (one per training slot) -> (KerasTuner trial, run id or None)
        self.in_flight: dict[str, tuple[Any, str | None]] = {}
        self.no_more = False

    # The study's clock runs only while a driver drives it.
    def _remaining_minutes(self, started: float) -> float | None:
        budget = float(self.meta.get("budget_minutes") or 0)
        if not budget:
            return None
        spent = float(self.meta.get("driven_s") or 0) + time.monotonic() - started
        return budget - spent / 60

    def run(self) -> Study:
        from cnnlab.data.dataset import load_dataset
        from cnnlab.train.jobs import max_concurrent_runs

        with _driving(self.study_id):
            study = load_study(self.study_id)
            if study.status in FINISHED:
                raise CnnlabError(f"Study {self.study_id} is {study.status}; it cannot run again.")
            self.meta = _update(
                self.study_id, status="running", driver=runs.worker_info(), error=None
            )
            self.dataset = load_dataset(self.meta["dataset"])
            self.oracle = make_oracle(self.meta, self.path)
            started = time.monotonic()
            slots = max_concurrent_runs()
            status, error = "completed", None
            try:
                while True:
                    if (self.path / CANCEL_FILE).exists():
                        _cancel_trials(self.study_id)
                        status = "cancelled"
                        self.say("cancelled")
                        break
                    self._collect()
                    remaining = self._remaining_minutes(started)
                    if remaining is not None and remaining < MIN_TRIAL_MINUTES:
                        self.no_more = True
                    if not self.no_more:
                        self._fill(slots, remaining)
                    if self.no_more and not self.in_flight:
                        break
                    self.meta = _update(
                        self.study_id,
                        driven_s=float(self.meta.get("driven_s") or 0) + time.monotonic() - started,
                    )
                    started = time.monotonic()
                    time.sleep(POLL_S)
            except RuntimeError as failure:  # KerasTuner: too many failures in a row
                status, error = "failed", str(failure).strip().splitlines()[0]
                _cancel_trials(self.study_id)
            self.meta = _update(
                self.study_id,
                status=status,
                error=error,
                finished=runs.now_iso(),
                driven_s=float(self.meta.get("driven_s") or 0) + time.monotonic() - started,
            )
        return load_study(self.study_id)

    def _fill(self, slots: int, remaining: float | None) -> None:
        """Hand a trial to every free slot, while the oracle has some."""
        from cnnlab.train.jobs import check_room

        for index in range(slots):
            tuner_id = f"slot-{index}"
            if tuner_id in self.in_flight:
                continue
            # Trials handed out before a crash come back through the retry queue.
            if (
                len(self.oracle.trials) >= int(self.meta["max_trials"])
                and not self.oracle._retry_queue
            ):
                self.no_more = True
                return
            try:
                check_room()
            except CnnlabError:
                return  # the workspace is full: wait for a place
            trial = self.oracle.create_trial(tuner_id)
            if trial.status == "STOPPED":
                self.no_more = True
                return
            if trial.status != "RUNNING":
                return  # IDLE: the oracle waits for trials in flight
            self.in_flight[tuner_id] = (trial, None)
            self._start(tuner_id, remaining)

    def _start(self, tuner_id: str, remaining: float | None) -> None:
        """Attach the trial to its run: the existing one, resumed if it was
        interrupted, or a new one."""
        from cnnlab.train import jobs

        trial, _ = self.in_flight[tuner_id]
        values = dict(trial.hyperparameters.values)
        params = {key: value for key, value in values.items() if not key.startswith("tuner/")}
        existing = trial_runs(self.study_id).get(trial.trial_id)
        try:
            if existing is not None:
                if existing.status == "interrupted":
                    jobs.resume_run(existing.run_id)
                    self.say(f"trial {trial.trial_id}: resumed run {existing.run_id}")
                else:
                    self.say(f"trial {trial.trial_id}: run {existing.run_id} is {existing.status}")
                self.in_flight[tuner_id] = (trial, existing.run_id)
                return
            run_id = self._new_run(trial.trial_id, values, params, remaining)
        except CnnlabError as error:
            self._end(tuner_id, None, str(error))
            return
        self.in_flight[tuner_id] = (trial, run_id)
        shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
        self.say(f"trial {trial.trial_id}: run {run_id} ({shown})")

    def _new_run(self, trial_id: str, values: dict, params: dict, remaining: float | None) -> str:
        from cnnlab.train import jobs
        from cnnlab.train.spec import TrainSpec

        base = self.meta["base"]
        epochs = int(self.meta["epochs"])
        if "tuner/epochs" in values:  # Hyperband: this trial's share of the epochs
            epochs = epochs_of(int(values["tuner/epochs"]), epochs)
        tune = {
            "study": self.study_id,
            "trial": trial_id,
            "params": params,
            "objective": self.meta["objective"],
            "epochs": epochs,
        }
        budget = {"budget_minutes": max(1.0, math.ceil(remaining))} if remaining else {}
        monitor = {
            "monitor": "val_accuracy" if self.meta["objective"] == "val_accuracy" else "val_loss"
        }
        previous = values.get("tuner/trial_id")
        if previous:  # Hyperband: train a promoted trial further from its weights
            source = trial_runs(self.study_id).get(previous)
            if source is not None and source.status == "completed":
                tune["continues"] = previous
                done = epochs_of(int(values.get("tuner/initial_epoch") or 0), self.meta["epochs"])
                more = max(1, epochs - done)
                return jobs.fork_run(
                    source.run_id, "best", tune=tune, epochs=more, **budget, **monitor
                )
        arch, spec = trial_config(
            base["arch"], TrainSpec.from_dict(base["train"]), params, self.dataset, epochs
        )
        spec = spec.with_changes(**budget, **monitor)
        return jobs.start_run(
            self.dataset.name,
            arch,
            spec,
            name=f"{self.study_id} trial {trial_id}",
            tags=[TAG],
            tune=tune,
        )

    def _collect(self) -> None:
        """Report every finished trial to the oracle."""
        for tuner_id, (trial, run_id) in list(self.in_flight.items()):
            if run_id is None:
                continue
            info = runs.load_run(run_id)
            if info.is_active:
                continue
            if info.status == "interrupted":  # its worker died under a live driver
                try:
                    from cnnlab.train.jobs import resume_run

                    resume_run(run_id)
                    self.say(f"trial {trial.trial_id}: resumed run {run_id}")
                    continue
                except CnnlabError as error:
                    self._end(tuner_id, run_id, str(error))
                    continue
            score = score_of(info, self.meta["objective"])
            if score is None:
                self._end(tuner_id, run_id, info.error or f"its run ended {info.status}")
            else:
                self._end(tuner_id, run_id, None, score)

    def _end(self, tuner_id: str, run_id: str | None, error: str | None, score=None) -> None:
        trial, _ = self.in_flight.pop(tuner_id)
        if error is None:
            self.oracle.update_trial(trial.trial_id, {self.meta["objective"]: score})
            trial.status = "COMPLETED"
            self.say(f"trial {trial.trial_id}: {self.meta['objective']} = {score:.4f}")
        else:
            trial.status = "FAILED"
            trial.message = error
            self.say(f"trial {trial.trial_id}: failed: {error}")
            if run_id is None:
                params = {
                    k: v
                    for k, v in trial.hyperparameters.values.items()
                    if not k.startswith("tuner/")
                }
                failed = [
                    *(self.meta.get("failed_trials") or []),
                    {"trial": trial.trial_id, "params": params, "error": error},
                ]
                self.meta = _update(self.study_id, failed_trials=failed)
        self.oracle.end_trial(trial)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def drive(study_id: str, on_event: Callable[[str], None] | None = None) -> Study:
    """Run study ``study_id``'s search in this process until it ends; returns it.

    Raises:
        CnnlabError: when the study has a driver already or has finished.
    """
    return Driver(study_id, on_event).run()


# --- the best trial -------------------------------------------------------------------------


def promote(study_id: str, retrain: bool = False) -> str:
    """Make a study's best trial its result; returns the promoted run's id.

    The best trial's run is named and tagged ``best``. With ``retrain``, a new run
    trains the same configuration on the train and validation splits together, for
    the epochs at which the trial was best (nothing is held out to stop it earlier);
    the test split still judges it.

    Raises:
        CnnlabError: when no trial has completed yet.
    """
    study = load_study(study_id)
    best = study.best()
    if best is None:
        raise CnnlabError(f"Study {study_id} has no completed trial yet; nothing to promote.")
    info = runs.load_run(best.run_id)
    tags = sorted({*info.tags, "best"})
    runs.update_run(best.run_id, tags=tags, name=info.name or f"{study_id} best")
    promoted = best.run_id
    if retrain:
        from cnnlab.train import jobs

        epochs = info.metrics().get("final_epoch") or info.train.get("epochs")
        spec = info.record.train.with_changes(
            epochs=int(epochs), train_on="train+val", early_stopping=False, warmup_epochs=0
        )
        promoted = jobs.start_run(
            info.dataset,
            info.arch,
            spec,
            name=f"{study_id} best, retrained on train+val",
            tags=[TAG, "best"],
        )
    _update(study_id, promoted=promoted)
    return promoted
