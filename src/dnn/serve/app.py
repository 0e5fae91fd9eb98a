"""The HTTP API and the page over trained runs: a thin shell over :func:`dnn.run.load_run` and the predictors.

    GET  /                        the page (static HTML/CSS/JS, no build step, nothing from another site)
    GET  /health                  503 while the runs load (in a background thread at start-up), then 200
    GET  /runs                    every run: name, task, model, panel, metrics, and its predictor's contract (kind,
                                  modality, inputs, outputs, explains, options), from which the page builds a panel
    POST /runs/{name}/run         any run: {"inputs": [text | {"file": base64, "name": ...}], "options": {...},
                                  "explain": bool}: the predictor's rows (+ the first input explained, as a PNG)
    POST /runs/{name}/predict     {"text": ...} or {"image": base64}: class probabilities (+ feature maps), or tags
    POST /runs/{name}/translate   {"text": ..., "beam_size": 5}: output tokens and the attention matrix
    POST /runs/{name}/generate    {"prompt": ..., "length", "temperature", "top_k", "top_p", "seed"}: text
    GET  /runs/{name}/report      the run's report.html, where it has one
    GET  /runs/{name}/curves      its training curves (loss, learning rate, validation metrics) as JSON
    GET  /docs                    the OpenAPI schema as a page drawn here (FastAPI's viewer needs a CDN)

Access (:mod:`dnn.serve.access`): a ``Host`` that is not this server's → 400 (DNS rebinding); with a token (a
server bound beyond loopback), a request without it → 401.

Limits (:class:`~dnn.serve.limits.ServeLimits`): a body over ``max_body_bytes`` → 413, counted as it arrives; a
body not read within ``body_timeout_s`` → 408; a bad input (any field out of its range, a temperature of 1e-45 or
NaN, text that is not valid Unicode included) → 422 with a one-line ``detail`` naming the field; a client holding
its share of the ``max_concurrency`` slots → 429 at once, another waits for the next free slot
(:mod:`dnn.serve.slots`); a request running past ``timeout_s`` → 503. Inference, and every read of a run's
files, runs in a pool of ``max_concurrency`` worker threads; a request past its time is also *stopped*: every
module of a served model checks the worker's deadline before its forward
(:func:`dnn.serve.inference.watch_deadlines`), so decoding ends at its next step and the slot is free again at once.
A report or curves file is served only from inside its run directory, never through a symbolic or a hard link,
and read in bounded time and memory (:mod:`dnn.serve.files`); an error names the file, never what is in it. JSON
is the only thing read from a client; nothing is unpickled. (Connection limits and header timeouts belong to the
HTTP server: see :mod:`dnn.serve.server`.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from dnn.errors import DnnError
from dnn.run import LoadedRun, load_run
from dnn.rundir import METRICS, REPORT
from dnn.serve import files, inference
from dnn.serve.access import Access
from dnn.serve.docs import docs_page
from dnn.serve.limits import ServeLimits
from dnn.serve.middleware import BodyLimit
from dnn.serve.runs import ServedRun, load_served, run_names
from dnn.serve.slots import FairSlots, Full
from dnn.serve.uploads import MAX_INPUTS, Upload
from dnn.tasks.language import TextGenerator
from dnn.tasks.options import Option
from dnn.tasks.seq2seq import Seq2SeqPredictor

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"
PAGE_POLICY = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; object-src 'none'"
# a report is dnn's own HTML (inline style, images as data: URLs, no script): sandboxed, it can run nothing
REPORT_POLICY = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
log = logging.getLogger("dnn.serve")
# what a POST may answer besides 200, as the /docs page lists it (details: the module docstring)
LIMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "the Host is not this server's name (see --allow-host)"},
    401: {"description": "this server needs its token (bound beyond loopback, or --token)"},
    408: {"description": "the body did not arrive within the body timeout"},
    413: {"description": "the body is over --max-body-bytes"},
    422: {"description": "a bad input, a parameter out of its range or invalid Unicode: a one-line detail naming it"},
    429: {"description": "this client holds its share of the --max-concurrency slots, or none came free; try again"},
    503: {"description": "ran past --timeout (and was stopped), or the runs are still loading"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such run, or it has no such file to serve"}}


def _unicode(value: str) -> str:
    """Text that can be written as UTF-8: a lone surrogate (``"\\ud800"`` in JSON) is not a character."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"not valid Unicode (a lone surrogate at character {err.start}); send UTF-8 text") from None
    return value


Text = Annotated[str, AfterValidator(_unicode)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _valid_keys(cls, data: Any) -> Any:
        """An unknown key is refused by name, so it must be one too (the answer could not be written otherwise)."""
        if isinstance(data, dict):
            for key in data:
                if isinstance(key, str):
                    try:
                        key.encode("utf-8")
                    except UnicodeEncodeError:
                        raise ValueError("a key is not valid Unicode (a lone surrogate); send UTF-8 text") from None
        return data


def _option(predictor: type, name: str) -> Option:
    """The option ``name`` of a predictor class's schema: the older endpoints take their limits from it."""
    return next(option for option in predictor.options if option.name == name)


BEAM = _option(Seq2SeqPredictor, "beam_size")
LENGTH, TEMPERATURE, TOP_K, TOP_P, SEED = (
    _option(TextGenerator, name) for name in ("length", "temperature", "top_k", "top_p", "seed")
)


class FileInput(_Request):
    file: Text = Field(description="the file's bytes, base64-encoded (a data: URL works too)")
    name: Text = Field("", max_length=1000, description="its name, shown in the answer (not a path on the server)")


def _input_form(value: Any) -> str | None:
    return "text" if isinstance(value, str) else "file" if isinstance(value, (dict, FileInput)) else None


# an input is a text or a file, told apart by its JSON type (one error message, not one per form tried)
Input = Annotated[
    Annotated[Text, Tag("text")] | Annotated[FileInput, Tag("file")],
    Discriminator(_input_form, custom_error_type="input_form",
                  custom_error_message='must be a text or {"file": <base64>, "name": <file name>}'),
]  # fmt: skip


class RunRequest(_Request):
    inputs: list[Input] = Field(
        min_length=1, max_length=MAX_INPUTS, description="texts, or files, as the run's modality says"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="the run's options by name (GET /runs lists them); checked by the run"
    )
    explain: bool = Field(False, description="also draw why the run answered the first input so (a PNG)")


class PredictRequest(_Request):
    text: Text | None = Field(None, description="the text to classify or tag")
    image: Text | None = Field(None, description="a PNG/JPEG, base64-encoded (a data: URL works too)")
    feature_maps: int = Field(16, ge=0, le=64, description="image runs: how many first-layer maps to return")


class TranslateRequest(_Request):
    text: Text = Field(description="the sentence to translate")
    beam_size: int = Field(BEAM.default, ge=BEAM.low, le=BEAM.high, description=BEAM.help)


class GenerateRequest(_Request):
    prompt: Text = Field("", description="the text to continue (empty: start as after a line break)")
    length: int | None = Field(
        None,
        ge=LENGTH.low,
        le=LENGTH.high,
        description=f"{LENGTH.help} (default {LENGTH.default}, at most --max-tokens)",
    )
    temperature: float = Field(
        TEMPERATURE.default, ge=0, le=TEMPERATURE.high, allow_inf_nan=False,
        description=f"0 is greedy; otherwise at least {TEMPERATURE.low:g} (smaller overflows the logits)",
    )  # fmt: skip
    top_k: int | None = Field(TOP_K.default, ge=TOP_K.low, le=TOP_K.high, description=TOP_K.help)
    top_p: float | None = Field(TOP_P.default, ge=TOP_P.low, le=TOP_P.high, allow_inf_nan=False, description=TOP_P.help)
    seed: int = Field(SEED.default, ge=SEED.low, le=SEED.high, description=SEED.help)

    @field_validator("temperature")
    @classmethod
    def _greedy_or_not_too_small(cls, value: float) -> float:
        if 0 < value < TEMPERATURE.low:
            raise ValueError(f"must be 0 (greedy) or at least {TEMPERATURE.low:g}, got {value:g}")
        return value


def _in_inference_mode(deadline: inference.Deadline, context: Callable[[], AbstractContextManager],
                       fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:  # fmt: skip
    with torch.inference_mode(), context(), inference.within(deadline):
        return fn(*args, **kwargs)


def client_of(request: Request) -> Hashable:
    """Who sent ``request``, for the fair share of slots: its peer address (every connection from one address is
    one client). Behind no proxy: a forwarded-for header is the client's word, not trusted."""
    return request.client.host if request.client is not None else None


class _State:
    """The runs (loaded once, in a background thread), the worker pool and its slots (:class:`FairSlots`, only
    used on the event loop's thread: handlers and future callbacks)."""

    def __init__(self, paths: dict[str, Path], limits: ServeLimits, load: Callable[[Path], LoadedRun],
                 context: Callable[[], AbstractContextManager]):  # fmt: skip
        self.paths, self.limits, self.load, self.context = paths, limits, load, context
        self.runs: dict[str, ServedRun] = {}
        self.error: str | None = None
        self.loaded = threading.Event()
        self.pool: ThreadPoolExecutor | None = None
        self.slots = FairSlots(limits.max_concurrency)
        self.working: set[inference.Deadline] = set()  # the deadlines of the work in the pool (event loop only)

    def start(self) -> None:
        self.pool = ThreadPoolExecutor(self.limits.max_concurrency, thread_name_prefix="dnn-serve")
        threading.Thread(target=self._load_all, name="dnn-serve-load", daemon=True).start()

    def stop(self) -> None:
        for deadline in list(self.working):  # running work stops at its next forward call
            deadline.cancel()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

    def _load_all(self) -> None:
        for name, path in self.paths.items():
            try:
                served = load_served(name, path, self.load)
                inference.watch_deadlines(served.run.model)
                self.runs[name] = served
                log.info("loaded %s (%s)", name, path)
            except Exception as err:  # shown by /health; the server stays up to say so
                self.error = f"{path}: {err}" if isinstance(err, DnnError) else f"{path}: {type(err).__name__}: {err}"
                log.error("could not load run %s", self.error)
                break
        self.loaded.set()

    def check_ready(self) -> None:
        if self.error is not None:
            raise HTTPException(503, f"a run failed to load: {self.error}")
        if not self.loaded.is_set():
            raise HTTPException(503, f"runs are still loading ({len(self.runs)} of {len(self.paths)} loaded)")

    def run(self, name: str, status: int = 422) -> ServedRun:
        self.check_ready()
        if name not in self.runs:
            raise HTTPException(status, f"unknown run {name!r}; runs: {', '.join(self.runs)}")
        return self.runs[name]

    @property
    def in_flight(self) -> int:
        return self.slots.in_use

    async def call(self, client: Hashable, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a worker thread under inference mode, within the concurrency and time
        limits, in a slot taken fairly for ``client`` (429 if it gets none); NotServed becomes 404, another
        DnnError 422. Past ``timeout_s`` the answer is 503 and the work stops at its next forward call (its
        deadline has passed), which frees the slot."""
        limits = self.limits
        try:
            await self.slots.acquire(client, wait_s=limits.timeout_s)
        except Full as err:
            raise HTTPException(429, str(err), {"Retry-After": "1"}) from None
        loop = asyncio.get_running_loop()
        deadline = inference.Deadline(limits.timeout_s)
        try:
            future = loop.run_in_executor(
                self.pool, lambda: _in_inference_mode(deadline, self.context, fn, *args, **kwargs)
            )
        except RuntimeError:  # the pool is shut down: the server is stopping
            self.slots.release(client)
            raise HTTPException(503, "the server is shutting down") from None
        self.working.add(deadline)
        future.add_done_callback(lambda done: self._finished(done, deadline, client))
        past = f"the request ran past the limit of {limits.timeout_s:g} s (--timeout) and was stopped; ask for less"
        try:
            return await asyncio.wait_for(asyncio.shield(future), limits.timeout_s)
        except asyncio.TimeoutError:  # TimeoutError from Python 3.11 on; not yet in 3.10
            deadline.cancel()  # the worker stops at its next forward call, if its clock has not stopped it yet
            raise HTTPException(503, past) from None
        except inference.Cancelled:  # the worker's clock ran out a moment before this one
            raise HTTPException(503, past) from None
        except files.NotServed as err:
            raise HTTPException(404, str(err)) from None
        except DnnError as err:
            raise HTTPException(422, str(err)) from None

    def _finished(self, future: Future, deadline: inference.Deadline, client: Hashable) -> None:
        self.slots.release(client)  # the slot is free only now that the worker is done, even after a timeout
        self.working.discard(deadline)
        if future.cancelled():
            return
        err = future.exception()  # retrieved either way: a late result is discarded quietly
        if err is not None and not isinstance(err, (DnnError, inference.Cancelled)):
            log.error("inference failed: %s: %s", type(err).__name__, err)


def _one_line(err: RequestValidationError) -> str:
    first = err.errors()[0] if err.errors() else {"loc": ("body",), "msg": "invalid request"}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"] or ["body"]
    more = len(err.errors()) - 1
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")  # a validator's own message, as written
    line = " ".join(f"{'.'.join(loc)}: {msg}".split()) + (f" (and {more} more)" if more > 0 else "")
    return line.encode("utf-8", "backslashreplace").decode("utf-8")  # a name the client sent may be no Unicode


class _JSON(JSONResponse):
    """JSON answers in ASCII (``\\u`` escapes): nothing a client sent can make one unwritable."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def create_app(run_dirs: Sequence[str | os.PathLike], limits: ServeLimits | None = None, *,
               load: Callable[[Path], LoadedRun] = load_run,
               context: Callable[[], AbstractContextManager] = nullcontext, allow_hosts: Iterable[str] = (),
               token: str | None = None) -> FastAPI:  # fmt: skip
    """The app serving ``run_dirs`` (each named by its folder) within ``limits``.

    It answers only requests whose ``Host`` is the address the client connected to, a loopback name or one of
    ``allow_hosts``; given a ``token``, only requests that carry it (:mod:`dnn.serve.access`).

    Every request's work runs in a worker thread inside ``context()`` (``dnn serve --precision bf16``: autocast,
    which is per thread and so must be entered there, not around the server).

    The runs are loaded with ``load`` (:func:`dnn.run.load_run`) in a background thread when the app starts (its
    lifespan), so ``/health`` answers 503 until every run is loaded. A path that is not a run directory, or two
    runs with one name, fail here at once.
    """
    limits = limits or ServeLimits()
    state = _State(run_names(run_dirs), limits, load, context)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        yield
        state.stop()

    app = FastAPI(
        title="dnn serve", summary="Try trained dnn runs: classify, translate, generate, transcribe, caption, ...",
        lifespan=lifespan,
        docs_url=None, redoc_url=None, default_response_class=_JSON,
    )  # fmt: skip
    app.state.dnn = state
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s)
    app.add_middleware(Access, allow_hosts=allow_hosts, token=token)  # added last: the first to see a request

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return _JSON({"detail": _one_line(err)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def refused(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return _JSON({"detail": err.detail}, status_code=err.status_code, headers=err.headers)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_POLICY})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()))

    @app.get("/health", summary="200 once every run is loaded, 503 before")
    def health() -> JSONResponse:
        loaded = {"loaded": len(state.runs), "total": len(state.paths)}
        if state.error is not None:
            return JSONResponse({"status": "failed", "detail": state.error, **loaded}, status_code=503)
        if not state.loaded.is_set():
            return JSONResponse({"status": "loading", **loaded}, status_code=503)
        return JSONResponse({"status": "ok", **loaded, "in_flight": state.in_flight})

    @app.get("/runs", summary="every run: name, task, model, panel, metrics, links and its predictor's contract")
    def runs() -> list[dict[str, Any]]:
        state.check_ready()
        out = []
        for name, served in state.runs.items():
            info = served.describe()
            base = f"/runs/{quote(name, safe='')}"
            info.pop("has_report"), info.pop("has_curves")  # what the routes below will serve, no more
            info["report"] = f"{base}/report" if files.servable(served.path, REPORT) else None
            info["curves"] = f"{base}/curves" if files.servable(served.path, METRICS) else None
            out.append(info)
        return out

    @app.post("/runs/{name}/run", summary="any run: its predictor's answer to texts or files (+ a picture of why)",
              responses=LIMIT_RESPONSES)  # fmt: skip
    async def run(name: str, body: RunRequest, request: Request) -> dict[str, Any]:
        served = state.run(name)
        inputs = [item if isinstance(item, str) else Upload(item.file, item.name) for item in body.inputs]
        return await state.call(client_of(request), inference.run, served, limits, inputs, body.options, body.explain)

    @app.post(
        "/runs/{name}/predict", summary="classify a text or a base64 image, or tag a text", responses=LIMIT_RESPONSES
    )
    async def predict(name: str, body: PredictRequest, request: Request) -> dict[str, Any]:
        served = state.run(name)
        return await state.call(
            client_of(request), inference.predict, served, limits, body.text, body.image, body.feature_maps
        )

    @app.post(
        "/runs/{name}/translate",
        summary="translate a text: output tokens and the attention matrix",
        responses=LIMIT_RESPONSES,
    )
    async def translate(name: str, body: TranslateRequest, request: Request) -> dict[str, Any]:
        served = state.run(name)
        return await state.call(client_of(request), inference.translate, served, limits, body.text, body.beam_size)

    @app.post("/runs/{name}/generate", summary="continue a prompt with a language model", responses=LIMIT_RESPONSES)
    async def generate(name: str, body: GenerateRequest, request: Request) -> dict[str, Any]:
        served = state.run(name)
        return await state.call(
            client_of(request), inference.generate, served, limits, body.prompt, body.length, body.temperature,
            body.top_k, body.top_p, body.seed,
        )  # fmt: skip

    files_responses = {**NOT_FOUND, **{code: LIMIT_RESPONSES[code] for code in (400, 401, 429, 503)}}

    @app.get("/runs/{name}/report", summary="the run's report.html (written by `dnn inspect`)",
             response_class=HTMLResponse, responses=files_responses)  # fmt: skip
    async def report(name: str, request: Request) -> Response:
        run_dir = state.run(name, status=404).path
        html = await state.call(client_of(request), files.read_report, run_dir)
        headers = {"Content-Security-Policy": REPORT_POLICY, "Referrer-Policy": "no-referrer"}
        return Response(html, media_type="text/html; charset=utf-8", headers=headers)

    @app.get("/runs/{name}/curves", summary="the run's training curves from metrics.jsonl", responses=files_responses)
    async def curves(name: str, request: Request) -> dict[str, Any]:
        run_dir = state.run(name, status=404).path
        return await state.call(client_of(request), files.read_curves, run_dir)

    return app
