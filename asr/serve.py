"""`asr serve`: a model behind the HTTP API that transcription servers share (OpenAI's
`POST /v1/audio/transcriptions`, as faster-whisper-server, whisper.cpp's server and vLLM speak it), so
existing clients work unchanged, plus `GET /health`, `GET /v1/models` and a web page at `/`.

Requests are decoded together: each upload is read, cut at pauses as `asr transcribe` cuts it, and
its pieces join one queue. A single worker thread takes the oldest piece, waits at most
`max_wait_ms` for company (by default not at all: what arrives while a batch decodes forms the next),
and decodes the pieces of similar length that fit in one batch (asr/segments.py length_buckets), so
throughput grows with load while a lone request never waits for others. The event loop only parses and answers, so the server keeps answering (health checks,
uploads) while a long file decodes. Bad requests get a 4xx JSON error in OpenAI's shape."""
import asyncio
import contextlib
import collections
import concurrent.futures
import os
import queue
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .audio import AudioError, load_audio
from .config import BATCH_SECONDS, MAX_BATCH_SIZE
from .decode import DecodingOptions
from .errors import ASRError
from .segments import Segment, length_buckets
from .text import word_separator
from .transcribe import Decoded, Recognizer, Transcript
from .writers import format_subtitles, subtitle_cues

RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
LANGUAGE_NAMES = {"en": "english", "zh": "chinese"}  # what OpenAI's verbose_json calls a language
PAGE = os.path.join(os.path.dirname(__file__), "serve_page.html")


@dataclass
class ServeOptions:
    host: str = field(default="127.0.0.1", metadata=dict(help="address to listen on (loopback: this machine only)"))
    port: int = field(default=8000, metadata=dict(help="port to listen on"))
    model_name: Optional[str] = field(default=None, metadata=dict(
        help="the model's id in /v1/models and responses (default: the model file's folder name)"))
    max_upload_mb: float = field(default=25.0, metadata=dict(help="largest upload accepted, MB (OpenAI's limit)"))
    request_timeout: float = field(default=300.0, metadata=dict(
        help="seconds a request may wait for its transcript before it fails with 504"))
    max_wait_ms: float = field(default=0.0, metadata=dict(
        help="how long a piece of audio waits for others to share its batch (0: none; pieces that arrive "
             "while a batch decodes still form the next one)"))
    max_batch_size: int = field(default=MAX_BATCH_SIZE, metadata=dict(help="pieces of audio per batch at most"))
    threads: int = field(default=0, metadata=dict(
        help="torch threads for decoding (0: torch's default, one per core; fewer leave cores to other work)"))

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ASRError(f"--port {self.port}: a port is a number from 0 to 65535")
        if self.max_upload_mb <= 0 or self.request_timeout <= 0 or self.max_wait_ms < 0 or self.max_batch_size < 1:
            raise ASRError("--max-upload-mb and --request-timeout must be > 0, --max-wait-ms >= 0, --max-batch-size >= 1")


class RequestError(Exception):
    """A request the server refuses: the HTTP status and the message the client gets."""

    def __init__(self, status: int, message: str, param: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


@dataclass(eq=False)  # pieces are told apart by identity
class _Piece:
    audio: np.ndarray
    future: concurrent.futures.Future
    arrival: float = field(default_factory=time.monotonic)


class Batcher:
    """Pieces of audio from any number of callers, decoded in shared batches by one thread.
    `batch_sizes` counts the batches decoded, by size."""

    def __init__(self, recognizer: Recognizer, options: DecodingOptions, batch_seconds: float,
                 max_batch_size: int, max_wait_ms: float):
        self.recognizer, self.options = recognizer, options
        self.batch_seconds, self.max_batch_size, self.max_wait = batch_seconds, max_batch_size, max_wait_ms / 1000
        self.batch_sizes: collections.Counter = collections.Counter()
        self._queue: "queue.Queue[Optional[_Piece]]" = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="asr-batcher", daemon=True)
        self._thread.start()

    def submit(self, audio: np.ndarray) -> concurrent.futures.Future:
        """A future of the piece's Decoded result (asr/transcribe.py)."""
        piece = _Piece(audio, concurrent.futures.Future())
        self._queue.put(piece)
        return piece.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        pending: List[_Piece] = []
        while True:
            if not pending:
                piece = self._queue.get()
                if piece is None:
                    return
                pending.append(piece)
            closing = self._gather(pending)
            batch = self._oldest_batch(pending)
            pending = [p for p in pending if p not in batch]
            self._decode(batch)
            if closing:
                for p in pending:
                    p.future.cancel()
                return

    def _gather(self, pending: List[_Piece]) -> bool:
        """Adds what arrives until the oldest piece has waited max_wait or a full batch is there;
        True when the server is closing."""
        while len(pending) < self.max_batch_size and self._padded(pending) < self.batch_seconds:
            timeout = pending[0].arrival + self.max_wait - time.monotonic()
            try:
                piece = self._queue.get(timeout=max(timeout, 0)) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                return False
            if piece is None:
                return True
            pending.append(piece)
        return False

    def _padded(self, pieces: List[_Piece]) -> float:
        return len(pieces) * max(len(p.audio) for p in pieces) / self.recognizer.sample_rate

    def _oldest_batch(self, pending: List[_Piece]) -> List[_Piece]:
        """The batch of similar lengths that holds the oldest piece."""
        rate = self.recognizer.sample_rate
        groups = length_buckets([len(p.audio) / rate for p in pending], self.batch_seconds, self.max_batch_size)
        return [pending[i] for i in next(g for g in groups if 0 in g)]

    def _decode(self, batch: List[_Piece]) -> None:
        batch = [p for p in batch if p.future.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            results = self.recognizer.decode_arrays([p.audio for p in batch], self.options)
        except Exception as e:  # the requests fail with it; the server goes on
            for p in batch:
                p.future.set_exception(e)
            return
        self.batch_sizes[len(batch)] += 1
        for p, result in zip(batch, results):
            p.future.set_result(result)


def read_upload(data: bytes, filename: str, sample_rate: int) -> np.ndarray:
    """Mono samples of an uploaded file; errors name the upload, not the temporary copy it is read from."""
    if not data:
        raise RequestError(400, f"{filename}: the uploaded file is empty", "file")
    suffix = os.path.splitext(filename)[1][:16]
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            return load_audio(tmp.name, sample_rate)
        except AudioError as e:
            raise RequestError(400, str(e).replace(tmp.name, filename), "file") from None


class Transcriber:
    """What the endpoints share: the model, its batcher, and the cutting of long uploads."""

    def __init__(self, recognizer: Recognizer, options: DecodingOptions, serve: ServeOptions, model_name: str,
                 batch_seconds: float = BATCH_SECONDS):
        self.recognizer, self.options, self.serve, self.model_name = recognizer, options, serve, model_name
        self.batcher = Batcher(recognizer, options, batch_seconds, serve.max_batch_size, serve.max_wait_ms)
        self.limit = recognizer.chunk_limit(options)
        self.requests = 0

    async def transcribe(self, samples: np.ndarray, name: str) -> Transcript:
        segment = Segment(name, "", len(samples) / self.recognizer.sample_rate, samples=samples)
        pieces = self.recognizer.pieces(segment, self.options)
        futures = [asyncio.wrap_future(self.batcher.submit(p.load(self.recognizer.sample_rate))) for p in pieces]
        try:
            results: List[Decoded] = await asyncio.wait_for(asyncio.gather(*futures), self.serve.request_timeout)
        except asyncio.TimeoutError:
            raise RequestError(504, f"{name}: not transcribed within the request timeout of "
                                    f"{self.serve.request_timeout:g} s") from None
        self.requests += 1
        return self.recognizer.join_pieces([segment], [(0, p) for p in pieces], results, self.options.snap_seconds)[0]

    def stats(self) -> Dict:
        return dict(status="ok", model=self.model_name, requests=self.requests,
                    batches={str(k): v for k, v in sorted(self.batcher.batch_sizes.items())})


def compression_ratio(text: str) -> float:
    """Whisper's repetition signal: bytes of the text over bytes of it compressed."""
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 3) if data else 0.0


def response_body(transcript: Transcript, fmt: str, granularities: List[str], recognizer: Recognizer):
    """The body OpenAI's API returns for `fmt`: a dict (JSON) or a string. Segments of verbose_json are
    the transcript's subtitle cues; this model estimates neither per-segment log-probabilities nor the
    probability of no speech, so those are null."""
    separator = word_separator(recognizer.lang)
    cues = subtitle_cues(transcript.words, separator)
    if fmt == "text":
        return transcript.text + "\n"
    if fmt in ("srt", "vtt"):
        return "".join(format_subtitles(cues, fmt))
    if fmt == "json":
        return dict(text=transcript.text)
    body = dict(task="transcribe", language=LANGUAGE_NAMES.get(recognizer.lang, recognizer.lang),
                duration=round(transcript.duration, 3), text=transcript.text,
                segments=[dict(id=i, seek=0, start=round(s, 3), end=round(e, 3), text=line,
                               tokens=recognizer.tokenizer.encode(line), temperature=0.0, avg_logprob=None,
                               compression_ratio=compression_ratio(line), no_speech_prob=None)
                          for i, (s, e, line) in enumerate(cues)])
    if "word" in granularities:
        body["words"] = [dict(word=w, start=round(s, 3), end=round(e, 3)) for w, s, e in transcript.words]
    return body


def attention_picture(transcriber: Transcriber, samples: np.ndarray, text: str) -> Dict:
    """The cross-attention (alignment heads) the decoder gives `text` over the audio, for the page to draw."""
    recognizer = transcriber.recognizer
    seconds = len(samples) / recognizer.sample_rate
    if transcriber.limit and seconds > transcriber.limit:
        raise RequestError(400, f"the attention picture is of one piece of at most {transcriber.limit:g} s; "
                                f"this recording is {seconds:.1f} s", "file")
    tokens = recognizer.tokenizer.encode(text)
    weights = recognizer.attention(samples, tokens, transcriber.options)
    return dict(tokens=[recognizer.token_text(t) for t in tokens] + ["<eos>"],
                seconds_per_frame=recognizer.model.seconds_per_frame,
                weights=np.round(weights.double().numpy(), 4).tolist())


def create_app(recognizer: Recognizer, options: DecodingOptions, serve: ServeOptions, model_name: str,
               batch_seconds: float = BATCH_SECONDS):
    """The FastAPI application; `app.state.transcriber` holds the model and its batcher (batches of at
    most `batch_seconds` of padded audio)."""
    from fastapi import FastAPI, File, Form, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
    from starlette.exceptions import HTTPException

    transcriber = Transcriber(recognizer, options, serve, model_name, batch_seconds)
    started = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        transcriber.batcher.close()

    app = FastAPI(title="attend-asr", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.transcriber = transcriber
    max_bytes = int(serve.max_upload_mb * 1024 * 1024)

    def error(status: int, message: str, param: Optional[str] = None) -> JSONResponse:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        return JSONResponse(dict(error=dict(message=message, type=kind, param=param, code=status)), status)

    @app.exception_handler(RequestError)
    async def refused(request: Request, e: RequestError):
        return error(e.status, e.message, e.param)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(x) for x in p['loc'][1:]) or 'body'}: {p['msg']}" for p in e.errors())
        return error(400, problems or "malformed request")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        return error(e.status_code, str(e.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):  # one line to the client, never a traceback
        return error(500, f"internal error: {type(e).__name__}: {e}")

    @app.middleware("http")
    async def limit_upload(request: Request, call_next):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes + 64 * 1024:  # room for the form's other fields
            return error(413, f"upload of {int(declared) / 1e6:.1f} MB is over the upload limit of {serve.max_upload_mb:g} MB",
                         "file")
        return await call_next(request)

    async def uploaded_samples(file: UploadFile) -> Tuple[np.ndarray, str]:
        name = file.filename or "upload"
        data = await file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise RequestError(413, f"{name}: over the upload limit of {serve.max_upload_mb:g} MB", "file")
        samples = await asyncio.get_running_loop().run_in_executor(None, read_upload, data, name, recognizer.sample_rate)
        return samples, name

    @app.get("/", response_class=HTMLResponse)
    async def page():
        with open(PAGE, encoding="utf-8") as f:
            return f.read().replace("{{model}}", model_name)

    @app.get("/health")
    async def health():
        return transcriber.stats()

    @app.get("/v1/models")
    async def models():
        return dict(object="list", data=[dict(id=model_name, object="model", created=started,
                                              owned_by="attend-asr", language=recognizer.lang)])

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(file: UploadFile = File(...), model: Optional[str] = Form(None),
                             language: Optional[str] = Form(None), prompt: Optional[str] = Form(None),
                             response_format: str = Form("json"), temperature: Optional[float] = Form(None),
                             timestamp_granularities: List[str] = Form(["segment"], alias="timestamp_granularities[]")):
        if response_format not in RESPONSE_FORMATS:
            raise RequestError(400, f"response_format {response_format!r} is not one of {', '.join(RESPONSE_FORMATS)}",
                               "response_format")
        unknown = set(timestamp_granularities) - {"segment", "word"}
        if unknown:
            raise RequestError(400, f"timestamp_granularities: {', '.join(sorted(unknown))} is not segment or word",
                               "timestamp_granularities")
        if language and language.lower() not in (recognizer.lang, LANGUAGE_NAMES.get(recognizer.lang)):
            raise RequestError(400, f"this model transcribes {recognizer.lang!r}, not {language!r}", "language")
        samples, name = await uploaded_samples(file)
        body = response_body(await transcriber.transcribe(samples, name), response_format,
                             timestamp_granularities, recognizer)
        return JSONResponse(body) if isinstance(body, dict) else PlainTextResponse(body)

    @app.post("/v1/audio/attention")
    async def attention(file: UploadFile = File(...), text: Optional[str] = Form(None)):
        samples, name = await uploaded_samples(file)
        if text is None:
            text = (await transcriber.transcribe(samples, name)).text
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, attention_picture, transcriber, samples, text)

    return app


def model_name_of(path: str) -> str:
    """A model's default id: its experiment folder's name (exp/fsdd/model.pt -> fsdd)."""
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return folder or os.path.splitext(os.path.basename(path))[0]


def serve(recognizer: Recognizer, options: DecodingOptions, serve_options: ServeOptions, model_path: str,
          batch_seconds: float = BATCH_SECONDS) -> None:
    """Runs the server until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise ASRError("serving needs FastAPI and uvicorn: pip install 'attend-asr[serve]'") from None
    if serve_options.threads:
        torch.set_num_threads(serve_options.threads)
    name = serve_options.model_name or model_name_of(model_path)
    app = create_app(recognizer, options, serve_options, name, batch_seconds)
    uvicorn.run(app, host=serve_options.host, port=serve_options.port, log_level="info",
                timeout_graceful_shutdown=5)

