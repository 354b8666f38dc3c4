"""The HTTP side of ``samadapter app``: the page and a small JSON API over one :class:`App`.

The standard library's :class:`~http.server.ThreadingHTTPServer` serves one hand-written page
(``page.html``); every request that needs the models becomes a job on the app's
:class:`~samadapter.app.jobs.JobQueue` and the page polls ``/api/job/ID`` for its position and
result. Errors reach the page as ``{"error": "one line"}`` with a 4xx status, never as a
traceback. Uploads come as the request body (no multipart parsing).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from samadapter.app.jobs import Job, JobQueue, describe_error
from samadapter.app.photo import (
    MAX_UPLOAD_BYTES,
    Labeller,
    LabelRequest,
    PhotoSession,
    UploadTooLarge,
    read_upload,
)
from samadapter.app.runs import RunFolder
from samadapter.errors import ConfigError, ImageError, OutputError, SamAdapterError
from samadapter.io.images import IMAGE_SUFFIXES
from samadapter.pipeline import Segmenter
from samadapter.vocab import BUILTIN

KEPT_PHOTOS = 8
"""Photos whose features are kept in memory (the least recently used is dropped)."""

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "samples"
"""The repository's sample photos (offered on the page when present)."""


class NotFound(SamAdapterError):
    """A page, photo, image or job that does not exist."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def safe_upload_name(raw: str) -> str:
    """The browser's file name reduced to a plain, short file name for messages and downloads."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '"<>:|?*')
    name = name.strip(" .")[:120]
    return name or "photo"


@dataclass
class Reply:
    """An HTTP answer: status, content type, body and optional extra headers."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] | None = None


def json_reply(data: Any, status: int = 200) -> Reply:
    return Reply(status, "application/json", json.dumps(data).encode())


class App:
    """The state behind the page: the models, kept photos, the open run, the job queue.

    Args:
        segmenter: the loaded models (their keep rule is the page's default).
        run_dir: a run's output folder to browse, or ``None``.
        allow_open: whether the page may open other folders (only when bound to this machine).
        samples: folder of sample photos offered on the page.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        run_dir: Path | None = None,
        allow_open: bool = True,
        samples: Path | None = SAMPLES_DIR,
    ) -> None:
        self.labeller = Labeller(segmenter)
        self.device = segmenter.device.type
        self.jobs = JobQueue()
        self.photos: OrderedDict[str, PhotoSession] = OrderedDict()
        self.run: RunFolder | None = RunFolder(run_dir) if run_dir is not None else None
        self.allow_open = allow_open
        self.samples = samples if samples is not None and samples.is_dir() else None
        self.sam_runs = 0
        self.relabels = 0
        self.tmp = Path(tempfile.mkdtemp(prefix="samadapter-app-"))
        self._ids = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop the worker and remove the app's temporary files."""
        self.jobs.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- what the page shows ------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        seg = self.labeller.base
        return {
            "models": {k: seg.info.get(k) for k in ("preset", "device")},
            "keep_ratio": seg.settings.keep_ratio,
            "score_thresh": seg.settings.score_thresh,
            "vocabularies": [
                {"name": b.name, "classes": b.num_classes, "description": b.description}
                for b in BUILTIN.values()
            ],
            "samples": self.sample_names(),
            "run": self.run.summary() if self.run is not None else None,
            "allow_open": self.allow_open,
            "max_upload_mb": MAX_UPLOAD_BYTES >> 20,
            "sam_runs": self.sam_runs,
        }

    def sample_names(self) -> list[str]:
        if self.samples is None:
            return []
        return sorted(
            p.name
            for p in self.samples.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )

    def photo(self, photo_id: str) -> PhotoSession:
        with self._lock:
            photo = self.photos.get(photo_id)
            if photo is None:
                raise NotFound(
                    "this photo is no longer kept",
                    hint=f"upload it again (the app keeps the last {KEPT_PHOTOS} photos)",
                )
            self.photos.move_to_end(photo_id)
            return photo

    def view(self, photo_id: str, photo: PhotoSession, seconds: float) -> dict[str, Any]:
        """What the page needs after a photo was (re)named."""
        assert photo.result is not None and photo.request is not None
        h, w = photo.image.shape[:2]
        rows = photo.table()
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["class"]] = counts.get(row["class"], 0) + 1
        return {
            "photo": photo_id,
            "name": photo.name,
            "width": w,
            "height": h,
            "version": photo.version,
            "proposals": len(photo.proposals),
            "rows": rows,
            "counts": counts,
            "classes": len(photo.request.vocab),
            "notes": photo.notes,
            "relabel_ms": round(seconds * 1000, 1),
            "sam_runs": self.sam_runs,
            "relabels": self.relabels,
        }

    # -- jobs ---------------------------------------------------------------------------------

    def submit_photo(self, data: bytes, name: str, request: LabelRequest) -> Job:
        """Queue SAM + CLIP for a new photo, then its first naming."""
        image, notes = read_upload(data, name, self.tmp)  # bad files fail now, not in the queue

        def work(job: Job) -> dict[str, Any]:
            job.progress = f"SAM + CLIP on {name}"
            seg = self.labeller.segmenter(request.keep_ratio, request.score_thresh)
            photo = PhotoSession.compute(seg, image, name, notes)
            with self._lock:
                self.sam_runs += 1
            photo_id = self._keep(photo)
            job.progress = f"naming {len(photo.proposals)} masks"
            t0 = time.perf_counter()
            photo.relabel(seg, request)
            return self.view(photo_id, photo, time.perf_counter() - t0)

        return self.jobs.submit("photo", work)

    def submit_label(self, photo_id: str, request: LabelRequest) -> Job:
        """Queue a relabel of a kept photo (no SAM, no CLIP image encoder)."""
        photo = self.photo(photo_id)

        def work(job: Job) -> dict[str, Any]:
            job.progress = f"naming with {len(request.vocab)} classes"
            t0 = time.perf_counter()
            photo.relabel(
                self.labeller.segmenter(request.keep_ratio, request.score_thresh), request
            )
            seconds = time.perf_counter() - t0
            with self._lock:
                self.relabels += 1
            return self.view(photo_id, photo, seconds)

        return self.jobs.submit("label", work)

    def submit_run_photo(self, image_id: int, request: LabelRequest) -> Job:
        """Queue opening a run's image in the photo view, from the run's cached features."""
        run = self.open_run()
        run.image(image_id)

        def work(job: Job) -> dict[str, Any]:
            job.progress = "reading the cached features"
            seg = self.labeller.segmenter(request.keep_ratio, request.score_thresh)
            photo = run.cached_photo(image_id, seg)
            photo_id = self._keep(photo)
            t0 = time.perf_counter()
            photo.relabel(seg, request)
            return self.view(photo_id, photo, time.perf_counter() - t0)

        return self.jobs.submit("photo", work)

    def _keep(self, photo: PhotoSession) -> str:
        with self._lock:
            self._ids += 1
            photo_id = f"p{self._ids}"
            self.photos[photo_id] = photo
            while len(self.photos) > KEPT_PHOTOS:
                self.photos.popitem(last=False)
        return photo_id

    def submit_run_relabel(self, request: LabelRequest) -> Job:
        """Relabel the open run with ``samadapter relabel``, beside the queue."""
        run = self.open_run()
        run.relabel_command(request, self.device)  # refuses a run without features now

        def work(job: Job) -> dict[str, Any]:
            job.progress = "loading the run's models"

            def progress(line: str) -> None:
                job.progress = line

            return run.relabel(request, self.device, progress)

        return self.jobs.run_beside("run-relabel", work)

    def open_run(self) -> RunFolder:
        if self.run is None:
            raise NotFound("no run folder is open", hint="start the app with a run's folder")
        return self.run


def _int(query: dict[str, list[str]], key: str) -> int:
    try:
        return int(query[key][0])
    except (KeyError, IndexError, ValueError):
        raise ConfigError(f"'{key}' must be a whole number") from None


Route = Callable[["Handler", re.Match[str], dict[str, list[str]]], Reply]


class Handler(BaseHTTPRequestHandler):
    """One request: routed by method and path to the :class:`App` (set on the subclass)."""

    app: App
    server_version = "samadapter-app"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the command prints its own lines

    # -- plumbing -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch(GET_ROUTES)

    def do_POST(self) -> None:
        self._dispatch(POST_ROUTES)

    def _dispatch(self, routes: list[tuple[re.Pattern[str], Route]]) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            for pattern, route in routes:
                match = pattern.fullmatch(url.path)
                if match:
                    reply = route(self, match, query)
                    break
            else:
                raise NotFound(f"no page {url.path}")
        except NotFound as e:
            reply = json_reply({"error": str(e)}, HTTPStatus.NOT_FOUND)
        except UploadTooLarge as e:
            reply = json_reply({"error": str(e)}, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        except SamAdapterError as e:
            reply = json_reply({"error": str(e)}, HTTPStatus.BAD_REQUEST)
        except Exception as e:  # never a traceback on the page
            reply = json_reply({"error": describe_error(e)}, HTTPStatus.INTERNAL_SERVER_ERROR)
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for key, value in (reply.headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def body(self, limit: int = 1 << 20) -> bytes:
        """The request body, refusing (after reading it) one longer than ``limit`` bytes."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ConfigError("bad Content-Length") from None
        if length > limit:
            left = length
            while left > 0 and left <= 16 * limit:  # drain, so the browser reads the reply
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
            if left > 0:
                self.close_connection = True
            raise UploadTooLarge(
                f"the upload is {length / 2**20:.0f} MB; the page takes up to "
                f"{limit / 2**20:.0f} MB",
                hint="downscale it, or run samadapter segment on it",
            )
        return self.rfile.read(length) if length else b""

    def json_body(self) -> Any:
        try:
            return json.loads(self.body() or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError("the request is not JSON") from None

    # -- routes -------------------------------------------------------------------------------

    def page(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        html = resources.files("samadapter.app").joinpath("page.html").read_bytes()
        return Reply(200, "text/html; charset=utf-8", html)

    def info(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        return json_reply(self.app.info())

    def job(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        status = self.app.jobs.status(match["id"])
        if status is None:
            raise NotFound(f"no job {match['id']}")
        return json_reply(status)

    def new_photo(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        label = query.get("label", ["{}"])[0]
        try:
            request = LabelRequest.from_json(json.loads(label), self.app.labeller.base)
        except json.JSONDecodeError:
            raise ConfigError("'label' must be JSON") from None
        sample = query.get("sample", [""])[0]
        if sample:
            if sample not in self.app.sample_names():
                raise NotFound(f"no sample photo '{sample}'")
            assert self.app.samples is not None
            self.body()
            data, name = (self.app.samples / sample).read_bytes(), sample
        else:
            data = self.body(MAX_UPLOAD_BYTES)
            name = safe_upload_name(query.get("name", ["photo"])[0])
            if not data:
                raise ImageError(f"{name} is empty (0 bytes)", hint="choose an image file")
        job = self.app.submit_photo(data, name, request)
        return json_reply(self.app.jobs.status(job.id))

    def label(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        request = LabelRequest.from_json(self.json_body(), self.app.labeller.base)
        job = self.app.submit_label(match["photo"], request)
        return json_reply(self.app.jobs.status(job.id))

    def overlay(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        return Reply(200, "image/jpeg", self.app.photo(match["photo"]).overlay_jpeg)

    def photo_at(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        photo = self.app.photo(match["photo"])
        if "index" in query:
            return json_reply({"masks": [photo.mask_info(_int(query, "index"))]})
        return json_reply({"masks": photo.masks_at(_int(query, "x"), _int(query, "y"))})

    def photo_mask(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        photo = self.app.photo(match["photo"])
        return Reply(200, "image/png", photo.highlight_png(int(match["index"])))

    def download(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        photo = self.app.photo(match["photo"])
        data, name = photo.download(match["kind"], self.app.tmp)
        kinds = {".json": "application/json", ".png": "image/png", ".zip": "application/zip"}
        content_type = kinds.get(Path(name).suffix, "application/octet-stream")
        disposition = f"attachment; filename*=UTF-8''{quote(name)}"
        return Reply(200, content_type, data, {"Content-Disposition": disposition})

    def run_summary(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        return json_reply(self.app.open_run().summary())

    def run_open(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        if not self.app.allow_open:
            raise ConfigError(
                "opening folders from the page is off when the app listens beyond this machine",
                hint="give the folder on the command line: samadapter app FOLDER",
            )
        data = self.json_body()
        folder = data.get("folder") if isinstance(data, dict) else None
        if not isinstance(folder, str) or not folder.strip():
            raise ConfigError("give a run's output folder")
        path = Path(folder.strip()).expanduser()
        if not path.is_dir():
            raise OutputError(f"{path} is not a folder", hint="give a run's --output folder")
        self.app.run = RunFolder(path)
        return json_reply(self.app.run.summary())

    def run_image(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        return json_reply(self.app.open_run().rows(int(match["image"])))

    def run_overlay(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        return Reply(200, "image/png", self.app.open_run().overlay_bytes(int(match["image"])))

    def run_at(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        run = self.app.open_run()
        hits = run.masks_at(int(match["image"]), _int(query, "x"), _int(query, "y"))
        return json_reply({"masks": hits})

    def run_mask(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        png = self.app.open_run().highlight_png(int(match["image"]), int(match["index"]))
        return Reply(200, "image/png", png)

    def run_photo(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        request = LabelRequest.from_json(self.json_body(), self.app.labeller.base)
        job = self.app.submit_run_photo(int(match["image"]), request)
        return json_reply(self.app.jobs.status(job.id))

    def run_relabel(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        request = LabelRequest.from_json(self.json_body(), self.app.labeller.base)
        job = self.app.submit_run_relabel(request)
        return json_reply(self.app.jobs.status(job.id))


_ID = r"(?P<photo>p\d+)"
GET_ROUTES: list[tuple[re.Pattern[str], Route]] = [
    (re.compile(p), r)
    for p, r in [
        (r"/", Handler.page),
        (r"/api/info", Handler.info),
        (r"/api/job/(?P<id>\d+)", Handler.job),
        (rf"/api/photo/{_ID}/overlay\.jpg", Handler.overlay),
        (rf"/api/photo/{_ID}/at", Handler.photo_at),
        (rf"/api/photo/{_ID}/mask/(?P<index>\d+)\.png", Handler.photo_mask),
        (rf"/api/photo/{_ID}/download/(?P<kind>[a-z.]+)", Handler.download),
        (r"/api/run", Handler.run_summary),
        (r"/api/run/image/(?P<image>\d+)", Handler.run_image),
        (r"/api/run/image/(?P<image>\d+)/overlay\.png", Handler.run_overlay),
        (r"/api/run/image/(?P<image>\d+)/at", Handler.run_at),
        (r"/api/run/image/(?P<image>\d+)/mask/(?P<index>\d+)\.png", Handler.run_mask),
    ]
]
POST_ROUTES: list[tuple[re.Pattern[str], Route]] = [
    (re.compile(p), r)
    for p, r in [
        (r"/api/photo", Handler.new_photo),
        (rf"/api/photo/{_ID}/label", Handler.label),
        (r"/api/run/open", Handler.run_open),
        (r"/api/run/relabel", Handler.run_relabel),
        (r"/api/run/image/(?P<image>\d+)/photo", Handler.run_photo),
    ]
]


def make_server(app: App | None, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    """An HTTP server for ``app`` bound to ``host:port`` (not yet serving). ``app`` may be
    given later with :func:`attach` (bind first, so a busy port fails before models load).

    Raises:
        ConfigError: the address cannot be bound (in use, or not this machine's).
    """
    handler = type("BoundHandler", (Handler,), {})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({e.strerror or e})",
            hint="choose another --port, or stop what uses it",
        ) from None
    server.daemon_threads = True
    if app is not None:
        attach(server, app)
    return server


def attach(server: ThreadingHTTPServer, app: App) -> None:
    """Let ``server`` (from :func:`make_server`) answer with ``app``."""
    server.RequestHandlerClass.app = app  # type: ignore[attr-defined]


@contextlib.contextmanager
def serving(app: App, host: str = "127.0.0.1", port: int = 0) -> Any:
    """Serve ``app`` on a background thread for the block's duration; yields the base URL."""
    server = make_server(app, host, port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        app.close()
