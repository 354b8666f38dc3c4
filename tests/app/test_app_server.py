"""The page's HTTP API (samadapter/app/server.py), driven with urllib."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from samadapter.app import server as server_module
from samadapter.app.photo import PhotoSession
from samadapter.app.runs import RunFolder
from samadapter.app.server import App, is_loopback, safe_upload_name

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def call(url: str, data: bytes | None = None, method: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            body = reply.read()
            kind = reply.headers.get("Content-Type", "")
            return reply.status, json.loads(body) if "json" in kind else body
    except urllib.error.HTTPError as e:
        body = e.read()
        assert b"Traceback" not in body
        return e.code, json.loads(body)


def wait_job(url: str, job: dict[str, Any]) -> dict[str, Any]:
    end = time.monotonic() + 60
    while job["state"] not in ("done", "error"):
        assert time.monotonic() < end, job
        time.sleep(0.05)
        job = call(f"{url}/api/job/{job['id']}")[1]
    return job


def photo_url(url: str, label: dict[str, Any], **query: str) -> str:
    return f"{url}/api/photo?" + urllib.parse.urlencode({**query, "label": json.dumps(label)})


def test_page_info_photo_and_relabel(served: tuple[str, App]) -> None:
    url, app = served
    status, html = call(url + "/")
    assert status == 200 and b"<title>samadapter</title>" in html
    info = call(url + "/api/info")[1]
    assert "chelsea.jpg" in info["samples"] and info["run"] is None
    assert {v["name"] for v in info["vocabularies"]} >= {"ade150", "coco-stuff"}
    data = (SAMPLES / "coffee.jpg").read_bytes()
    status, job = call(photo_url(url, {"classes": "dog,cup,plate"}, name="coffee.jpg"), data)
    assert status == 200 and job["kind"] == "photo"
    view = wait_job(url, job)["result"]
    assert [r["class"] for r in view["rows"]] == ["plate"]
    assert view["sam_runs"] == 1
    job = call(f"{url}/api/photo/{view['photo']}/label", b'{"classes": "tabby,mug"}')[1]
    view = wait_job(url, job)["result"]
    assert [r["class"] for r in view["rows"]] == ["tabby"] and view["version"] == 2
    assert app.labeller.base.proposer.calls == 1
    status, jpeg = call(f"{url}/api/photo/{view['photo']}/overlay.jpg")
    assert status == 200 and jpeg.startswith(b"\xff\xd8")
    top = call(f"{url}/api/photo/{view['photo']}/at?index=0")[1]["masks"][0]["top"]
    assert [t["name"] for t in top] == ["tabby", "mug"]
    status, coco = call(f"{url}/api/photo/{view['photo']}/download/coco.json")
    assert status == 200 and [c["name"] for c in coco["categories"]] == ["tabby", "mug"]


@pytest.mark.parametrize(
    ("path", "label", "body", "code", "message"),
    [
        ("name=a.txt", {"classes": "cat"}, b"plain text", 400, "a.txt is not an image"),
        ("name=a.jpg", {"classes": ""}, b"x", 400, "no classes given"),
        ("name=a.jpg", {"classes": "cat,cat"}, b"x", 400, "duplicate class name 'cat'"),
        ("name=a.jpg", {"classes": "cat"}, b"", 400, "a.jpg is empty"),
        ("sample=nope.jpg", {"classes": "cat"}, b"", 404, "no sample photo 'nope.jpg'"),
        ("name=../../etc/p.jpg", {"classes": "cat"}, b"x", 400, "p.jpg is not an image"),
    ],
)
def test_bad_input_is_a_message_and_sam_never_runs(
    served: tuple[str, App], path: str, label: dict[str, Any], body: bytes, code: int, message: str
) -> None:
    url, app = served
    query = dict(urllib.parse.parse_qsl(path))
    status, reply = call(photo_url(url, label, **query), body, method="POST")
    assert status == code
    assert set(reply) == {"error"} and message in reply["error"]
    assert "\n" not in reply["error"]
    assert app.labeller.base.proposer.calls == 0


def test_too_large_unknown_and_malformed(
    served: tuple[str, App], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = served
    monkeypatch.setattr(server_module, "MAX_UPLOAD_BYTES", 1000)
    status, reply = call(photo_url(url, {"classes": "cat"}, name="big.jpg"), b"x" * 5000)
    assert status == 413 and "the page takes up to" in reply["error"]
    assert call(url + "/nope")[0] == 404
    assert call(url + "/api/photo/p77/overlay.jpg")[1]["error"].startswith(
        "this photo is no longer kept"
    )
    assert call(url + "/api/job/77")[0] == 404
    status, reply = call(url + "/api/photo/p1/label", b"{oops", method="POST")
    assert status == 400 and reply["error"] == "the request is not JSON"
    status, reply = call(f"{url}/api/photo?label=%7Bbad", b"", method="POST")
    assert status == 400 and reply["error"] == "'label' must be JSON"
    assert call(url + "/api/run")[1]["error"].startswith("no run folder is open")


def test_a_request_waits_behind_one_image_and_sees_its_position(served: tuple[str, App]) -> None:
    url, app = served
    gate = threading.Event()
    busy = app.jobs.submit("photo", lambda job: gate.wait(30))
    while app.jobs.status(busy.id)["state"] != "running":  # type: ignore[index]
        time.sleep(0.01)
    status, job = call(photo_url(url, {"classes": "cat"}, sample="chelsea.jpg"), b"")
    assert status == 200
    assert (job["state"], job["position"], job["ahead"]) == ("queued", 1, 1)
    # the page stays responsive while the worker is busy
    assert call(url + "/api/info")[0] == 200
    gate.set()
    assert wait_job(url, job)["state"] == "done"


def test_an_internal_error_is_one_line(
    served: tuple[str, App], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = served

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(PhotoSession, "relabel", broken)
    job = call(photo_url(url, {"classes": "cat"}, sample="chelsea.jpg"), b"")[1]
    job = wait_job(url, job)
    assert job["error"] == "internal error (RuntimeError: kaput); see the log"


def test_relabel_a_run_through_the_relabel_command(served: tuple[str, App], run_copy: Path) -> None:
    url, app = served
    app.run = RunFolder(run_copy)
    before = (run_copy / "per-image" / "chelsea.jpg.json").read_text()
    job = call(url + "/api/run/relabel", b'{"classes": "tabby,mug", "keep_ratio": 0}')[1]
    assert job["kind"] == "run-relabel"
    job = wait_job(url, job)
    assert job["state"] == "done", job
    summary = job["result"]
    assert [i["classes"] for i in summary["images"]] == [{"mug": 1}, {"tabby": 1}]
    assert summary["classes_text"] == "tabby,mug"
    assert job["progress"].startswith("[2/2]")
    after = json.loads((run_copy / "per-image" / "chelsea.jpg.json").read_text())
    assert [c["name"] for c in after["categories"]] == ["tabby", "mug"]
    assert after != json.loads(before)
    assert app.labeller.base.proposer.calls == 0
    status, reply = call(url + "/api/run/relabel", b'{"classes": "a,A"}')
    assert status == 400 and "duplicate" in reply["error"]


def test_opening_folders_only_when_local(served: tuple[str, App], run_copy: Path) -> None:
    url, app = served
    status, summary = call(url + "/api/run/open", json.dumps({"folder": str(run_copy)}).encode())
    assert status == 200 and len(summary["images"]) == 2
    status, reply = call(url + "/api/run/open", b'{"folder": "/no/such/folder"}')
    assert status == 400 and reply["error"].startswith("/no/such/folder is not a folder")
    app.allow_open = False
    status, reply = call(url + "/api/run/open", json.dumps({"folder": str(run_copy)}).encode())
    assert status == 400 and "off when the app listens beyond this machine" in reply["error"]


def test_helpers() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert safe_upload_name("C:\\photos\\cat.jpg") == "cat.jpg"
    assert safe_upload_name("../..") == "photo"
    assert safe_upload_name('a"<b>.png') == "ab.png"


def test_a_run_image_opens_in_the_photo_view_from_its_cache(
    served: tuple[str, App], run_copy: Path
) -> None:
    url, app = served
    app.run = RunFolder(run_copy)
    saved = json.loads((run_copy / "per-image" / "coffee.jpg.json").read_text())
    body = b'{"classes": "dog,cup,plate", "keep_ratio": 0}'
    job = wait_job(url, call(url + "/api/run/image/1/photo", body)[1])
    assert job["state"] == "done", job
    view = job["result"]
    assert [r["class"] for r in view["rows"]] == ["plate"]
    assert view["rows"][0]["score"] == pytest.approx(saved["annotations"][0]["score"], abs=1e-4)
    assert view["rows"][0]["area"] == saved["annotations"][0]["area"]
    top = call(f"{url}/api/photo/{view['photo']}/at?index=0")[1]["masks"][0]["top"]
    assert top[0]["name"] == "plate" and len(top) == 3
    job = wait_job(url, call(f"{url}/api/photo/{view['photo']}/label", b'{"classes": "a,b"}')[1])
    assert {r["class"] for r in job["result"]["rows"]} <= {"a", "b"}
    assert app.labeller.base.proposer.calls == 0  # neither SAM nor a new photo's work ran
    record = json.loads((run_copy / "run.json").read_text())
    record["settings"]["models"]["clip"]["sha256"] = "0" * 64
    (run_copy / "run.json").write_text(json.dumps(record))
    job = wait_job(url, call(url + "/api/run/image/1/photo", body)[1])
    assert job["error"] == (
        "this run was made with other models than the app's (start the app with the run's "
        "--preset to open its images here)"
    )
