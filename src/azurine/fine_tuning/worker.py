"""The fine-tuning worker: takes queued jobs under a lease, trains them, and stores the adapter, the results file
and the fine-tuned model's name. It runs beside the batch worker (`azurine serve`, or `--role worker`) under the
same rules (docs/batch-and-files.md):

- a job is held under a lease the worker renews; a worker that dies leaves it to run out, and a restarted
  worker (its id starts with the same stable name) takes its jobs back at once;
- a checkpoint is written at the end of every epoch (and when the job is paused); a job taken again resumes from
  its last checkpoint, not from step 0;
- only the lease's holder writes the job's checkpoints, events and ending, so a worker that lost its job writes
  nothing more.

Training runs on one thread of its own, at the lowest CPU priority (nice 19 for that thread) and with
`AZURINE_FINE_TUNING_THREADS` torch threads (1), so online serving keeps the rest of the machine.

Training is metered as Azure bills it: the seconds and tokens of the steps since the last checkpoint are billed with
the next checkpoint, the job's success or its cancellation (`storage/fine_tuning.py`), and the hours go to Azure
Monitor's `FineTunedTrainingHours` metric when they are billed. Steps a crash or a shutdown loses are redone after
the resume, and billed then, once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from azurine.catalog import Catalog
from azurine.fine_tuning.hyperparameters import BASE_LEARNING_RATE
from azurine.fine_tuning.lora_gguf import adapter_gguf
from azurine.fine_tuning.results import results_csv
from azurine.fine_tuning.tokens import token_counter
from azurine.fine_tuning.trainer import ALPHA, Stopped, Work, train
from azurine.fine_tuning.training_file import Example, read_examples
from azurine.jobs.leases import renew_leases
from azurine.storage.files import FileStore
from azurine.storage.fine_tuning import FineTuningStore, JobRecord, fine_tuned_model_name

log = logging.getLogger("azurine.fine_tuning")
TRAINING_HOURS_METRIC = "FineTunedTrainingHours"  # Azure Monitor's REST name ("Processed FineTuned Training Hours")
SECONDS_PER_HOUR = 3600


class TrainingMetric(Protocol):
    """Where billed training hours are observed (the Azure Monitor metrics' recorder)."""

    def record(self, account_id: str, metric: str, value: float, dimensions: Mapping[str, str | None],
               at: float | None = None) -> None: ...


class _JobHooks:
    """What the trainer reports, written to the job's rows while this worker holds it."""

    def __init__(self, store: FineTuningStore, job: JobRecord, worker: str, stop: asyncio.Event,
                 metric: TrainingMetric | None) -> None:
        self._store, self._job, self._worker, self._stop = store, job, worker, stop
        self._metric = metric
        self._started = time.monotonic()
        self._first_step: int | None = None
        self.seconds, self.tokens = 0.0, 0  # trained since the last checkpoint, not billed yet

    def billed(self) -> None:
        """The pending training was billed: observe its hours, and start counting again."""
        if self._metric is not None and self.seconds > 0:
            self._metric.record(self._job.account_id, TRAINING_HOURS_METRIC, self.seconds / SECONDS_PER_HOUR, {})
        self.seconds, self.tokens = 0.0, 0

    def step(self, step: int, total: int, metrics: dict[str, Any], work: Work) -> None:
        self.seconds += work.seconds
        self.tokens += work.tokens
        if self._first_step is None:
            self._first_step = step - 1
        done = step - self._first_step
        finish = int(time.time() + (time.monotonic() - self._started) / done * (total - step))
        message = f"Step {step}/{total}: training loss={metrics['train_loss']:.4f}"
        if "valid_loss" in metrics:
            message += f", validation loss={metrics['valid_loss']:.4f}"
        self._store.add_event(self._job.id, self._worker, message, kind="metrics", data=metrics,
                              estimated_finish=finish)

    def checkpoint(self, step: int, metrics: dict[str, Any], state: bytes) -> None:
        if self._store.add_checkpoint(self._job.account_id, self._job.id, self._worker, step, metrics, state,
                                      self.seconds, self.tokens):
            self.billed()

    def should_stop(self, step: int) -> str | None:
        if self._stop.is_set():
            return "shutdown"
        status = self._store.status(self._job.id, self._worker)
        if status is None:
            return "lost"
        if status == "paused":
            return "pause"
        return None if status == "running" else status


class FineTuningWorker:
    def __init__(self, store: FineTuningStore, files: FileStore, catalog: Catalog, models_dir: Path,
                 worker_id: str, *, lease_s: float = 30.0, poll_s: float = 1.0, threads: int = 1,
                 metric: TrainingMetric | None = None) -> None:
        self._store, self._files, self._catalog = store, files, catalog
        self._metric = metric
        self._models_dir = models_dir
        self.worker_id = worker_id
        self._lease_s, self._poll_s, self._threads = lease_s, poll_s, threads

    async def run(self, stop: asyncio.Event) -> None:
        """Train jobs one at a time until `stop` is set; a job in training then stops at its next step and is
        handed back."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="fine-tuning")
        renewing = asyncio.create_task(
            renew_leases(stop, lambda: self._store.renew(self.worker_id, self._lease_s), self._lease_s,
                         "this worker's fine-tuning leases"))
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                try:
                    job = await asyncio.to_thread(self._store.claim, self.worker_id, self._lease_s)
                    if job is not None:
                        await loop.run_in_executor(executor, self.train, job, stop)
                        continue
                except Exception:
                    log.exception("a fine-tuning worker pass failed; trying again")
                try:
                    await asyncio.wait_for(stop.wait(), self._poll_s)
                except TimeoutError:
                    pass
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            executor.shutdown(wait=False)
            try:
                await asyncio.to_thread(self._store.release, self.worker_id)
            except Exception:  # the lease runs out by itself
                log.exception("could not hand back the jobs this worker held")

    def train(self, job: JobRecord, stop: asyncio.Event) -> None:
        """Train one job to its end, a stop, or a failure (stored as the job's error)."""
        _lowest_priority()
        try:
            self._train(job, stop)
        except Exception as error:
            log.exception("fine-tuning job %s failed", job.id)
            self._store.fail(job.id, self.worker_id, "training_failed", f"Training failed: {error}")

    def _train(self, job: JobRecord, stop: asyncio.Event) -> None:
        spec = self._catalog.get(job.model)
        if spec is None:
            self._store.fail(job.id, self.worker_id, "invalid_model", f"The model '{job.model}' is not installed.")
            return
        path = spec.path_in(self._models_dir)
        examples = self._examples(job, job.training_file, path, spec.context_length)
        validation = self._examples(job, job.validation_file, path, spec.context_length) \
            if job.validation_file else []
        if examples is None or validation is None:
            return
        resume = self._store.latest_state(job.account_id, job.id)
        self._store.add_event(job.id, self.worker_id, f"Resuming from the checkpoint at step {resume[0]}"
                              if resume else "Fine-tuning job started")
        hooks = _JobHooks(self._store, job, self.worker_id, stop, self._metric)
        outcome = train(path, examples, validation, job.hyperparameters, job.seed, hooks, resume, self._threads,
                        BASE_LEARNING_RATE)
        if isinstance(outcome, Stopped):
            log.info("fine-tuning job %s stopped at step %d: %s", job.id, outcome.step, outcome.reason)
            if outcome.reason in ("shutdown", "pause"):
                self._store.release(self.worker_id)
            elif outcome.reason == "cancelled" and self._store.bill_cancelled(
                    job.account_id, job.id, self.worker_id, hooks.seconds, hooks.tokens):
                hooks.billed()
            return
        if outcome.seconds > 0:
            log.info("fine-tuning job %s: %d steps, %.2f steps/s", job.id, outcome.steps,
                     (outcome.steps - (resume[0] if resume else 0)) / outcome.seconds)
        adapter = adapter_gguf(outcome.adapter, ALPHA)
        steps = self._store.metrics(job.id)
        result = self._files.create(job.account_id, "fine-tune-results", "results.csv",
                                    results_csv(steps, outcome.full_valid))
        name = fine_tuned_model_name(spec.name, job.id, job.suffix)
        if self._store.succeed(job.account_id, job.id, self.worker_id, name, adapter, result.id,
                               outcome.trained_tokens, hooks.seconds, hooks.tokens):
            hooks.billed()
            log.info("fine-tuning job %s succeeded: %s", job.id, name)
        else:  # cancelled at the last moment, or the lease was lost: the results file goes with it
            self._files.delete(job.account_id, result.id)

    def _examples(self, job: JobRecord, file_id: str | None, path: Path, context: int) -> list[Example] | None:
        content = self._files.content(job.account_id, file_id or "")
        if content is None:
            self._store.fail(job.id, self.worker_id, "file_not_found", f"The file '{file_id}' no longer exists.")
            return None
        code = "invalid_training_file" if file_id == job.training_file else "invalid_validation_file"
        examples, problem = read_examples(content, token_counter(path), context, code)
        if problem is not None:
            self._store.fail(job.id, self.worker_id, problem.code, problem.message)
            return None
        return examples



def _lowest_priority() -> None:
    """Nice 19 for this thread alone (Linux gives each thread its own nice value)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass
