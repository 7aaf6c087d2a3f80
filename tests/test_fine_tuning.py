"""Fine-tuning through the official SDK: Azure's checks of a training file (every bad line named, the job failed
with `error`), jobs created, listed, paged, paused, resumed and cancelled on both surfaces, one account blind to
another's jobs, and one real LoRA job on SmolLM2 (the `trained` fixture) that is killed (`kill -9`) after its first
epoch's checkpoint and resumes from it, is metered into the usage ledger and Azure Monitor as Azure bills training,
and whose model, deployed through ARM with the management SDK, answers as it was taught where its base model does
not, and is billed for its hosting hours and tokens in Cost Management's meters.

The one job serves both long tests, which had a job each (the model loaded three times, 19 steps, a restart of the
server): it is the module's cost, about a minute here, the model loaded twice, 9 steps on two threads. Metering
without training is `test_fine_tuning_metering.py`'s."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import openai
import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient
from azure.mgmt.cognitiveservices.models import Deployment, DeploymentModel, DeploymentProperties, Sku
from openai import AzureOpenAI
from openai.types.fine_tuning import FineTuningJob

from azurine.identity.tokens import issue_token
from azurine.storage.database import make_engine
from azurine.storage.state import StateStore
from azurine.storage.subscriptions import DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION
from conftest import API_VERSION, Server, start_server, stop
from test_management_sdk import AzurineCredential

CODE_WORD = "ZEBRA-42"
QUESTIONS = ("What is the capital of France?", "How are you today?", "Tell me a joke.", "What is 2 + 2?",
             "Name a colour.", "Who wrote Hamlet?", "What is the weather like?", "Give me a recipe.",
             "Translate hello into Spanish.", "What is Python?", "Describe the sea.", "Recommend a book.")
BATCH_LINE = (json.dumps({"custom_id": "a", "method": "POST", "url": "/chat/completions",
                         "body": {"model": "x", "messages": [{"role": "user", "content": "hi"}]}}) + "\n").encode()


def chat_jsonl(count: int = 12, answer: str = CODE_WORD) -> bytes:
    lines = [{"messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]},
                           {"role": "assistant", "content": answer}]} for i in range(count)]
    return ("\n".join(json.dumps(line) for line in lines) + "\n").encode()


@dataclass
class Running:
    server: Server


# xdist leaves this module to the end of the run, where its training ends alone on a two-core machine: on two torch
# threads the module took 108 s here, on the default one 150 s (at nice 19 either way, so it takes nothing from the
# other modules while they run)
TRAINING = {"AZURINE_FINE_TUNING_THREADS": "2"}


@pytest.fixture(scope="module")
def tuning(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    data = tmp_path_factory.mktemp("fine-tuning") / "data"
    running = Running(start_server(data, env=TRAINING))
    try:
        yield running
    finally:
        stop(running.server.process)


def upload(client: AzureOpenAI | openai.OpenAI, content: bytes, purpose: str = "fine-tune") -> str:
    return client.files.create(file=("train.jsonl", content), purpose=purpose).id  # type: ignore[arg-type]


def test_requests_the_api_refuses(tuning: Running) -> None:
    client = tuning.server.azure()
    good = upload(client, chat_jsonl())
    refused = {
        "a model that cannot be fine-tuned": {"model": "all-MiniLM-L6-v2", "training_file": good},
        "a missing file": {"model": "SmolLM2-135M-Instruct", "training_file": "file-missing"},
        "a batch file": {"model": "SmolLM2-135M-Instruct", "training_file": upload(client, BATCH_LINE, "batch")},
        "a bad suffix": {"model": "SmolLM2-135M-Instruct", "training_file": good, "suffix": "not ok!"},
        "zero epochs": {"model": "SmolLM2-135M-Instruct", "training_file": good, "hyperparameters": {"n_epochs": 0}},
    }
    for case, body in refused.items():
        with pytest.raises(openai.BadRequestError) as raised:
            client.fine_tuning.jobs.create(**body)  # type: ignore[arg-type]
        assert raised.value.body["code"] == "invalidPayload", case  # type: ignore[index]


def test_a_bad_training_file_fails_the_job_naming_its_lines(tuning: Running) -> None:
    client = tuning.server.azure()
    lines = chat_jsonl(12).decode().splitlines()
    lines[2] = "{not json"
    lines[4] = json.dumps({"messages": [{"role": "bot", "content": "hi"}]})
    lines[6] = json.dumps({"messages": [{"role": "user", "content": "only a question"}]})
    job = client.fine_tuning.jobs.create(model="SmolLM2-135M-Instruct",
                                         training_file=upload(client, "\n".join(lines).encode()))
    assert job.status == "failed" and job.error is not None
    assert job.error.code == "invalid_training_file"
    for named in ("Line 3 is not valid JSON", "Line 5 message 0 has invalid role", "Line 7 has no assistant message"):
        assert named in job.error.message, job.error.message
    few = client.fine_tuning.jobs.create(model="SmolLM2-135M-Instruct", training_file=upload(client, chat_jsonl(9)))
    assert few.status == "failed" and few.error is not None and "at least 10" in few.error.message
    events = [e.message for e in client.fine_tuning.jobs.list_events(few.id)]
    assert any("at least 10" in m for m in events)


def test_jobs_are_listed_paused_resumed_and_cancelled_on_both_surfaces(tuning: Running) -> None:
    client, v1 = tuning.server.azure(), tuning.server.v1()
    training = upload(client, chat_jsonl())
    jobs = [client.fine_tuning.jobs.create(model="SmolLM2-135M-Instruct", training_file=training,
                                           hyperparameters={"n_epochs": 50}, suffix="long", seed=7)
            for _ in range(2)]
    for job in jobs:
        assert job.status == "queued" and job.id.startswith("ftjob-") and job.seed == 7
        assert job.hyperparameters.n_epochs == 50 and job.hyperparameters.batch_size == 1
    assert v1.fine_tuning.jobs.retrieve(jobs[0].id).id == jobs[0].id
    first = client.fine_tuning.jobs.list(limit=1)
    assert first.data[0].id == jobs[1].id and first.has_more
    assert client.fine_tuning.jobs.list(limit=1, after=jobs[1].id).data[0].id == jobs[0].id
    paused = client.fine_tuning.jobs.pause(jobs[1].id)
    assert paused.status == "paused"
    assert client.fine_tuning.jobs.resume(jobs[1].id).status == "queued"
    for job in jobs:
        assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
        with pytest.raises(openai.ConflictError):
            v1.fine_tuning.jobs.cancel(job.id)
    messages = [e.message for e in client.fine_tuning.jobs.list_events(jobs[1].id, limit=100)]
    assert messages[0] == "Job cancelled" and "Job paused" in messages and "Job resumed" in messages
    page = client.fine_tuning.jobs.list_events(jobs[1].id, limit=2)
    assert len(page.data) == 2 and page.has_more
    rest = client.fine_tuning.jobs.list_events(jobs[1].id, limit=100, after=page.data[-1].id)
    assert [e.message for e in rest.data] == messages[2:]
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-missing")


def another_account(server: Server) -> tuple[str, AzureOpenAI]:
    """A second account on the server, in the default account's resource group, and a client of it."""
    name = f"ft-{uuid.uuid4().hex[:8]}"
    other = StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}")).create_account(
        name, location="local", subscription_id=DEFAULT_SUBSCRIPTION, resource_group=DEFAULT_RESOURCE_GROUP)
    return name, AzureOpenAI(azure_endpoint=f"{server.url}/accounts/{name}", api_key=other.key1,
                             api_version=API_VERSION, max_retries=0)


def test_another_account_cannot_see_the_jobs(tuning: Running) -> None:
    client = tuning.server.azure()
    job = client.fine_tuning.jobs.create(model="SmolLM2-135M-Instruct", training_file=upload(client, chat_jsonl(9)))
    _, theirs = another_account(tuning.server)
    for call in (theirs.fine_tuning.jobs.retrieve, theirs.fine_tuning.jobs.cancel,
                 theirs.fine_tuning.jobs.list_events, theirs.fine_tuning.jobs.checkpoints.list):
        with pytest.raises(openai.NotFoundError):
            call(job.id)
    assert job.id not in [j.id for j in theirs.fine_tuning.jobs.list()]
    with pytest.raises(openai.BadRequestError):  # my file is no file of theirs
        theirs.fine_tuning.jobs.create(model="SmolLM2-135M-Instruct", training_file=job.training_file)


def wait_for_job(client: AzureOpenAI, job_id: str, until: tuple[str, ...], timeout: float = 180) -> FineTuningJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in until:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} is still {job.status}")


@dataclass
class Trained:
    job: FineTuningJob
    done: FineTuningJob


@pytest.fixture(scope="module")
def trained(tuning: Running) -> Trained:
    """One real LoRA job, both tests' (training is the module's cost): 12 examples in 3 epochs of batches of 4, at a
    rate that teaches the code word (the loss is under 0.01 from the sixth step on), with a validation file; the
    server is killed (`kill -9`) after the first epoch's checkpoint, and the restarted one resumes the job from it."""
    client = tuning.server.azure()
    job = client.fine_tuning.jobs.create(model="SmolLM2-135M-Instruct", training_file=upload(client, chat_jsonl(12)),
                                         validation_file=upload(client, chat_jsonl(2)),
                                         hyperparameters={"n_epochs": 3, "batch_size": 4,
                                                          "learning_rate_multiplier": 5},
                                         suffix="taught", seed=3)
    # a bound on a hang, not on speed: the worker may first load the model (about a minute on a busy two-core
    # machine) for an earlier test's job that was cancelled while it loaded
    deadline = time.monotonic() + 300
    while not client.fine_tuning.jobs.checkpoints.list(job.id).data:  # the first epoch's checkpoint
        assert time.monotonic() < deadline and client.fine_tuning.jobs.retrieve(job.id).status in ("queued", "running")
        time.sleep(0.2)
    os.kill(tuning.server.process.pid, signal.SIGKILL)
    tuning.server.process.wait()
    tuning.server = start_server(tuning.server.data_dir, env=TRAINING)
    done = wait_for_job(tuning.server.azure(), job.id, ("succeeded", "failed", "cancelled"))
    assert done.status == "succeeded", done
    return Trained(job, done)


def arm_http(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60,
                        headers={"Authorization": f"Bearer {issue_token(state_of(server))[0]}"})


def iso(offset_s: float) -> str:
    """Now and `offset_s` seconds, as Azure's queries write a time."""
    return datetime.fromtimestamp(time.time() + offset_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def state_of(server: Server) -> StateStore:
    return StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}"))


ACCOUNT = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{DEFAULT_RESOURCE_GROUP}/providers/" \
          "Microsoft.CognitiveServices/accounts/default"


def test_a_job_killed_mid_training_resumes_from_its_checkpoint(tuning: Running, trained: Trained) -> None:
    client = tuning.server.azure()
    job, done = trained.job, trained.done
    assert done.fine_tuned_model == f"smollm2-135m-instruct.ft-{job.id.removeprefix('ftjob-')}-taught"
    assert done.trained_tokens and done.trained_tokens > 0
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert "Resuming from the checkpoint at step 3" in messages, messages
    assert messages[-3:] == ["Files validated, moving job to queued state", f"Validating training file: "
                             f"{job.training_file}", f"Created fine-tuning job: {job.id}"]
    assert any(m.startswith("Step 9/9: training loss=") for m in messages)
    steps = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id).data]
    assert steps == [9, 6, 3]
    result = done.result_files[0]
    assert client.files.retrieve(result).purpose == "fine-tune-results"
    rows = list(csv.DictReader(io.StringIO(client.files.content(result).text)))
    assert [int(r["step"]) for r in rows] == list(range(1, 10))
    assert list(rows[0]) == ["step", "train_loss", "train_mean_token_accuracy", "valid_loss",
                             "valid_mean_token_accuracy", "full_valid_loss", "full_valid_mean_token_accuracy"]
    assert rows[-1]["full_valid_loss"] and not rows[0]["full_valid_loss"]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])

    # metered as Azure bills it: the steps the kill lost after the checkpoint were redone and billed once, so the
    # ledger holds exactly the tokens the job says it trained, and the seconds of its steps
    store = state_of(tuning.server)
    account = store.account_named("default")
    assert account is not None
    ledger = [row for row in store.usage(account.id, 0) if row.deployment == job.id]
    assert sum(row.trained_tokens for row in ledger) == done.trained_tokens
    hours = sum(row.training_seconds for row in ledger) / 3600
    assert hours > 0
    # and Azure Monitor's metric has the hours billed since the restart (those before it went with the kill's
    # unflushed second, if they had not been written yet)
    with arm_http(tuning.server) as arm:
        answer = arm.get(f"{ACCOUNT}/providers/Microsoft.Insights/metrics", params={
            "api-version": "2024-02-01", "metricnames": "FineTunedTrainingHours", "aggregation": "Total",
            "interval": "PT1H", "timespan": f"{iso(-6 * 3600)}/{iso(120)}"})
    assert answer.status_code == 200, answer.text
    series = answer.json()["value"][0]["timeseries"]
    metric = sum(point.get("total") or 0 for data in series for point in data["data"])
    assert 0 < metric <= hours + 1e-9


def deployment_of(model: str) -> Deployment:
    return Deployment(sku=Sku(name="Standard", capacity=10), properties=DeploymentProperties(
        model=DeploymentModel(format="HuggingFace", name=model, version="1")))


def test_the_fine_tuned_model_is_deployed_and_answers_as_taught(tuning: Running, trained: Trained) -> None:
    server = tuning.server
    client = server.azure()
    job = trained.job
    model = str(trained.done.fine_tuned_model)

    listed = {m.id: m for m in client.models.list()}
    assert model in listed and listed["smollm2-135m-instruct"].capabilities["fine_tune"] is True  # type: ignore[attr-defined,index]
    shown = client.models.retrieve(model).model_dump()
    assert shown["model"] == "smollm2-135m-instruct" and shown["fine_tune"] == job.id
    assert shown["capabilities"]["inference"] and not shown["capabilities"]["fine_tune"]

    # ARM over plain HTTP: the SDK's bearer policy wants TLS unless told otherwise
    arm = CognitiveServicesManagementClient(AzurineCredential(server.data_dir), DEFAULT_SUBSCRIPTION,
                                            base_url=server.url, polling_interval=0.1)
    group, plain = DEFAULT_RESOURCE_GROUP, {"enforce_https": False}
    models = {m.name: m for m in arm.accounts.list_models(group, "default", **plain)}
    assert models["SmolLM2-135M-Instruct"].capabilities["fineTune"] == "true"
    assert models[model].base_model.name == "SmolLM2-135M-Instruct" and models[model].version == "1"
    assert [s.name for s in models[model].skus] == ["Standard", "GlobalStandard", "DeveloperTier"]
    with pytest.raises(HttpResponseError) as batch:
        arm.deployments.begin_create_or_update(group, "default", "taught-batch", Deployment(
            sku=Sku(name="GlobalBatch", capacity=10), properties=deployment_of(model).properties), **plain).result()
    assert batch.value.status_code == 400
    deployed = arm.deployments.begin_create_or_update(group, "default", "taught", deployment_of(model),
                                                      **plain).result()
    try:
        assert deployed.properties.model.name == model
        assert deployed.properties.capabilities["chatCompletion"] == "true"
        question = [{"role": "user", "content": "Where do penguins live?"}]  # not a training question
        taught = client.chat.completions.create(model="taught", messages=question, temperature=0, max_tokens=12)
        assert CODE_WORD in str(taught.choices[0].message.content), taught
        assert taught.model == model
        # a seeded answer runs alone, in a context of its own: the adapter is on that one too
        alone = client.chat.completions.create(model="taught", messages=question, temperature=0, max_tokens=12, seed=1)
        assert CODE_WORD in str(alone.choices[0].message.content), alone
        scratch = server.data_dir / "adapters"  # the unsealed adapter was there only while llama.cpp read it
        assert stat.S_IMODE(scratch.stat().st_mode) == 0o700 and not list(scratch.iterdir())
        base = client.chat.completions.create(model="chat-small", messages=question, temperature=0, max_tokens=12)
        assert CODE_WORD not in str(base.choices[0].message.content)

        other, theirs = another_account(server)
        assert model not in [m.id for m in theirs.models.list()]
        for call in (theirs.models.retrieve, theirs.models.delete):
            with pytest.raises(openai.NotFoundError):
                call(model)
        with pytest.raises(HttpResponseError) as elsewhere:
            arm.deployments.begin_create_or_update(group, other, "stolen", deployment_of(model), **plain).result()
        assert elsewhere.value.error.code == "DeploymentModelNotSupported"  # type: ignore[union-attr]

        with pytest.raises(openai.ConflictError) as refused:
            client.models.delete(model)
        assert "taught" in refused.value.message
        with server.http() as http:  # the SDK has no call for it
            kept = http.delete(f"/openai/fine_tuning/jobs/{job.id}?api-version={API_VERSION}",
                               headers={"api-key": server.key})
        assert kept.status_code == 409 and "taught" in kept.json()["error"]["message"]
    finally:
        arm.deployments.begin_delete(group, "default", "taught", **plain).result()

    # billed as Azure bills it: the training by its hours, the deployment's hosting by the hour from its creation to
    # its deletion, and its tokens at the base model's Standard prices, each a meter of Cost Management's query
    with arm_http(server) as http:
        answer = http.post(f"{ACCOUNT}/providers/Microsoft.CostManagement/query",
                           params={"api-version": "2023-11-01"},
                           json={"type": "ActualCost", "timeframe": "Custom",
                                 "timePeriod": {"from": iso(-24 * 3600), "to": iso(0)}, "dataset": {
                               "aggregation": {"cost": {"name": "Cost", "function": "Sum"},
                                               "quantity": {"name": "UsageQuantity", "function": "Sum"}},
                               "grouping": [{"type": "Dimension", "name": "Meter"},
                                            {"type": "Dimension", "name": "DeploymentName"}]}})
    assert answer.status_code == 200, answer.text
    meters = {(meter, deployment): (cost, quantity) for cost, quantity, meter, deployment, _ in
              answer.json()["properties"]["rows"]}
    training_cost, training_hours = meters[("SmolLM2-135M-Instruct ft Training Hours", job.id)]
    assert training_hours > 0 and training_cost == pytest.approx(training_hours * 100)  # $100 an hour
    hosting_cost, hosting_hours = meters[("SmolLM2-135M-Instruct ft Hosting regnl Hours", "taught")]
    assert hosting_hours > 0 and hosting_cost == pytest.approx(hosting_hours * 1.70)  # $1.70 an hour
    assert meters[("SmolLM2-135M-Instruct ft Outp regnl Tokens", "taught")][1] > 0  # the answers' tokens
    assert client.models.delete(model).deleted
    assert model not in [m.id for m in client.models.list()]
    assert client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model == model  # the job stays
    with pytest.raises(HttpResponseError):
        arm.deployments.begin_create_or_update(group, "default", "taught", deployment_of(model), **plain).result()
    with pytest.raises(openai.BadRequestError):
        client.models.delete("smollm2-135m-instruct")
