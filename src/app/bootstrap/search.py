"""An Optuna search over strategy parameters (`trading-engine sweep --search optuna`).

Each trial is one backtest (`run_point`, the same as a grid point), its objective the metric
the sweep ranks by. The study lives in an RDB storage: a SQLite file in the sweep's folder by
default, or the PostgreSQL database `--storage` names (`?schema=` honoured). So:

* an interrupted search resumes: the same command finds its study (named after what it
  searches) and runs the trials still missing; a trial cut short by the kill is failed by
  Optuna's heartbeat check once its grace period passed and its parameters are tried again;
* several processes, on one machine or many (`--workers`, `--scheduler`), search one study:
  each draws its next trial from what the storage holds, and stops when the study has
  `--trials` finished ones (a few more when workers finish at the same moment);
* with one worker, a seed gives the same trials, values and ranking every time (TPE seeded;
  more workers interleave in an order nobody controls). A resumed search is not the same
  sequence as an uninterrupted one: the sampler's random state starts again.

Pruning (Optuna's MedianPruner): a trial reports its return so far at each tenth of the bars
and stops when, from the third tenth on, it is below the median of the earlier trials at the
same point: hopeless parameter sets cost a fraction of a run. It needs a metric that is
better higher (the default); `--ascending` searches run every trial to the end.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from trading_engine.app.backtest.parameter_space import Axis
from trading_engine.app.bootstrap.cluster import BarFiles, Tasks, _local_paths
from trading_engine.app.bootstrap.sweep import SweepJob, run_point

CHECKPOINTS = 10  # reports per trial, at each tenth of the bars
HEARTBEAT_SECONDS, GRACE_SECONDS = 1, 5  # a trial silent this long was cut short: failed
ERROR, METRICS = "error", "metrics"  # a trial's user attributes


class SearchUnavailable(RuntimeError):
    """Optuna missing, or a storage it cannot open."""


@dataclass(frozen=True)
class SearchSpec:
    """A search, as plain data (it crosses process and machine boundaries)."""

    axes: dict[str, Axis]
    template: SweepJob  # every field but `number` and `point`
    metric: str
    maximise: bool
    trials: int
    seed: int
    storage: str  # sqlite:///FILE, postgresql://...[?schema=S], or memory://
    study: str
    prune: bool = True

    @property
    def pruning(self) -> bool:
        return self.prune and self.maximise


def study_name(template: SweepJob, axes: dict[str, Axis], metric: str, maximise: bool) -> str:
    """A name that is the same for the same search (so rerunning a command resumes it) and
    differs when what is searched or measured differs (a study's values must be comparable)."""
    data = [(Path(p).name, Path(p).stat().st_size) for p in template.data]
    described = {
        "axes": {name: repr(axis) for name, axis in sorted(axes.items())},
        "job": repr(replace(template, data=(), database_url=None)),
        "data": data,
        "metric": metric,
        "maximise": maximise,
    }
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:10]
    return f"{template.strategy}-{digest}"


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise SearchUnavailable(
            "--search optuna needs Optuna: pip install 'trading-engine[research]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed point is in the table
    return optuna


def storage_for(url: str) -> Any:
    """Optuna's storage for one of our database URLs."""
    optuna = _optuna()
    if url == "memory://":
        return optuna.storages.InMemoryStorage()
    parts = urlsplit(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parts.scheme == "sqlite":
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        # several local workers write the same file: wait for its lock rather than fail
        kwargs["connect_args"] = {"timeout": 60}
        target = url
    elif parts.scheme in ("postgresql", "postgres"):
        schema = parse_qs(parts.query).get("schema", [None])[0]
        if schema is not None:
            _create_schema(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), schema)
            kwargs["connect_args"] = {"options": f"-csearch_path={schema}"}
        target = urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, "", ""))
    else:
        raise SearchUnavailable(
            f"--storage: {url!r} is not sqlite:///FILE, postgresql://... or memory://"
        )
    for attempt in range(1, 6):
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.8
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    target,
                    engine_kwargs=kwargs,
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=GRACE_SECONDS,
                    heartbeat_stale_trial_callback=(
                        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
                    ),
                )
        except Exception as error:
            # Processes starting together race to create the tables (a unique violation
            # for all but one): the tables are there the next time.
            if "IntegrityError" in type(error).__name__ and attempt < 5:
                time.sleep(0.2 * attempt)
                continue
            raise SearchUnavailable(f"--storage {url}: {type(error).__name__}: {error}") from None
    raise AssertionError("unreachable")


def _create_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def open_study(spec: SearchSpec, worker: int = 0, storage: Any = None) -> Any:
    """The study, created by the first process to get there (`load_if_exists`); a process
    that loses that race (a unique violation) finds it made the next time."""
    optuna = _optuna()
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
        if spec.pruning
        else optuna.pruners.NopPruner()
    )
    storage = storage if storage is not None else storage_for(spec.storage)
    for attempt in range(1, 6):
        try:
            return optuna.create_study(
                study_name=spec.study,
                storage=storage,
                sampler=optuna.samplers.TPESampler(seed=spec.seed + worker),
                pruner=pruner,
                direction="maximize" if spec.maximise else "minimize",
                load_if_exists=True,
            )
        except Exception as error:
            if "IntegrityError" not in type(error).__name__ or attempt == 5:
                raise
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def _silent_trials(study: Any) -> set[int]:
    """Running trials of the study that never recorded a heartbeat."""
    from optuna.storages._rdb import models
    from optuna.trial import TrialState

    storage = getattr(study._storage, "_backend", study._storage)  # (behind Optuna's cache)
    with storage.scoped_session() as session:
        rows = (
            session.query(models.TrialModel.trial_id)
            .filter(models.TrialModel.study_id == study._study_id)
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .filter(~models.TrialModel.heartbeats.any())
            .all()
        )
    return {row[0] for row in rows}


def _fail_silent_trials(study: Any) -> None:
    """Fail (and queue again) the running trials that never beat: Optuna's stale check passes
    over them, so a process killed in the instant between creating a trial and its first
    heartbeat (the kill-and-resume test met it) left it RUNNING for ever, counted as running,
    and every later search of the study one trial short. A live trial beats within
    milliseconds: one still silent after the grace period is dead, whatever the clocks of
    the machines say."""
    from optuna.trial import TrialState

    silent = _silent_trials(study)
    if not silent:
        return
    time.sleep(GRACE_SECONDS)
    storage = study._storage
    retry = storage.get_heartbeat_stale_trial_callback()
    for trial_id in silent & _silent_trials(study):
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except Exception:  # finished meanwhile, or failed by another process
            continue
        if retry is not None:
            retry(study, storage.get_trial(trial_id))


def counted(study: Any) -> int:
    """Trials that count towards `--trials`: finished (complete, pruned), or failed because
    their point cannot run; not the ones cut short by a crash (those are tried again)."""
    from optuna.trial import TrialState

    return sum(
        1
        for trial in study.get_trials(deepcopy=False)
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (trial.state == TrialState.FAIL and ERROR in trial.user_attrs)
    )


def _running(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def suggest(trial: Any, axis: Axis) -> Any:
    if axis.values is not None:
        return trial.suggest_categorical(axis.name, list(axis.values))
    if axis.integer:
        step = 1 if axis.step is None else int(axis.step)
        return trial.suggest_int(axis.name, int(axis.low), int(axis.high), step=step, log=axis.log)
    return trial.suggest_float(
        axis.name, float(axis.low), float(axis.high), step=axis.step, log=axis.log
    )


class PointFailed(Exception):
    """The trial's backtest cannot run (its parameters, its data): a FAIL that counts."""


def search_worker(
    spec: SearchSpec, bars: BarFiles | None = None, worker: int = 0, storage: Any = None
) -> int:
    """Run trials until the study has `spec.trials` counted ones. Returns how many ran here."""
    template = spec.template
    if bars is not None and template.data:
        where = _local_paths(bars)
        template = replace(template, data=tuple(where[path] for path in template.data))
    study = open_study(spec, worker, storage)
    optuna = _optuna()
    if spec.storage != "memory://":
        # trials a killed process left RUNNING, failed (and queued again) once their
        # heartbeat is older than the grace period: they must not block the count below
        with warnings.catch_warnings():  # "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        _fail_silent_trials(study)
    ran = 0

    def objective(trial: Any) -> float:
        nonlocal ran
        ran += 1
        point = {name: suggest(trial, axis) for name, axis in spec.axes.items()}
        job = replace(template, number=trial.number + 1, point=point)
        result = run_point(job, _pruning(trial, spec, optuna) if spec.pruning else None)
        if ERROR in result:
            trial.set_user_attr(ERROR, result[ERROR])
            raise PointFailed(result[ERROR])
        metrics = {k: v for k, v in result.items() if k != "parameters"}
        trial.set_user_attr(METRICS, metrics)
        value = metrics.get(spec.metric)
        if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
            message = f"{spec.metric} is n/a for this run (e.g. no trade)"
            trial.set_user_attr(ERROR, message)
            raise PointFailed(message)
        return float(value)

    def stop_when_done(study: Any, _trial: Any) -> None:
        # the trials other workers are running will count too: do not start one more
        if counted(study) + _running(study) >= spec.trials:
            study.stop()

    if counted(study) + _running(study) < spec.trials:
        study.optimize(
            objective,
            n_trials=spec.trials,
            catch=(PointFailed,),
            callbacks=[stop_when_done],
            gc_after_trial=False,
        )
    return ran


def _pruning(trial: Any, spec: SearchSpec, optuna: Any) -> Callable[[int, int, Decimal], None]:
    cash = Decimal(spec.template.cash)
    reported = 0

    def checkpoint(done: int, total: int, equity: Decimal) -> None:
        nonlocal reported
        step = done * CHECKPOINTS // total
        if step <= reported or step >= CHECKPOINTS:
            return
        reported = step
        trial.report(float((equity / cash - 1) * 100), step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"return at {step}/{CHECKPOINTS} of the bars below the median")

    return checkpoint


def results(spec: SearchSpec, storage: Any = None) -> list[dict[str, Any]]:
    """Every trial of the study as a sweep result: `point` (trial number + 1), `parameters`,
    `state`, the metrics of a complete trial, `error` of a failed one, `pruned_at`."""
    from optuna.trial import TrialState

    study = open_study(spec, storage=storage)
    rows: list[dict[str, Any]] = []
    for trial in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {
            "point": trial.number + 1,
            "parameters": dict(trial.params),
            "state": trial.state.name,
        }
        if trial.state == TrialState.COMPLETE:
            row.update(trial.user_attrs.get(METRICS, {}))
        elif trial.state == TrialState.PRUNED:
            row["pruned_at"] = f"{trial.last_step}/{CHECKPOINTS}"
        elif trial.state == TrialState.FAIL:
            row[ERROR] = trial.user_attrs.get(ERROR, "cut short (the process running it died)")
        # else RUNNING (on another worker or machine, or cut short less than the grace
        # period ago) or WAITING: shown by its state, not a failure of this search
        rows.append(row)
    return rows


def run_search(
    spec: SearchSpec,
    workers: int,
    progress: Callable[[int, int], None] | None = None,
    cluster: Any = None,
    storage: Any = None,
) -> int:
    """Search with `workers` processes here, or one per worker thread of `cluster`; the
    progress bar follows the study's counted trials. `storage`: the study's, if the caller
    has it open already. Returns the trials run by this call."""
    storage = storage if storage is not None else storage_for(spec.storage)
    study = open_study(spec, storage=storage)
    if progress is not None:
        progress(min(counted(study), spec.trials), spec.trials)
    if cluster is not None:
        handle = cluster.start_tasks(search_worker, cluster.workers, spec, _bars(spec))
        return _follow(handle, study, spec, progress)
    if workers <= 1 or spec.storage == "memory://":
        stop = _poller(study, spec, progress)
        try:
            return search_worker(spec, storage=storage)
        finally:
            stop()
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(search_worker, spec, None, n) for n in range(workers)]
        return _follow(Tasks(futures), study, spec, progress)


def _bars(spec: SearchSpec) -> BarFiles | None:
    return BarFiles.read(list(spec.template.data)) if spec.template.data else None


def _follow(handle: Any, study: Any, spec: SearchSpec, progress: Any) -> int:
    while not handle.done():
        time.sleep(0.5)
        if progress is not None:
            progress(min(counted(study), spec.trials), spec.trials)
    outcomes = handle.outcomes()
    crashed = [o for o in outcomes if isinstance(o, BaseException)]
    if progress is not None:
        progress(min(counted(study), spec.trials), spec.trials)
    if crashed and len(crashed) == len(outcomes):
        raise SearchUnavailable(f"every search worker failed: {crashed[0]!r}")
    return sum(o for o in outcomes if isinstance(o, int))


def _poller(study: Any, spec: SearchSpec, progress: Any) -> Callable[[], None]:
    """The progress bar of a search running in this very thread: a thread reads the count."""
    import threading

    if progress is None:
        return lambda: None
    done = threading.Event()

    def follow() -> None:
        while not done.wait(0.5):
            try:
                progress(min(counted(study), spec.trials), spec.trials)
            except Exception:  # a busy SQLite file: the next reading will do
                continue

    thread = threading.Thread(target=follow, name="search-progress", daemon=True)
    thread.start()

    def stop() -> None:
        done.set()
        thread.join()
        progress(min(counted(study), spec.trials), spec.trials)

    return stop
