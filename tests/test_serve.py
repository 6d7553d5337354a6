"""asr serve: OpenAI's transcription API through the official client and plain HTTP, batching that
gives what one-by-one decoding gives, bad requests, and the web page in headless Chromium."""
import concurrent.futures
import json
import os
import re
import shutil
import socket
import threading
import time

import numpy as np
import pytest
import soundfile as sf

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from asr.audio import load_audio  # noqa: E402
from asr.serve import ServeOptions, create_app  # noqa: E402
from asr.transcribe import Recognizer  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(overfit_model):
    """(base URL, the Recognizer it serves, the manifest's clips with their texts)."""
    model_path, manifest = overfit_model
    recognizer = Recognizer.load(model_path)
    options = recognizer.options()
    serve = ServeOptions(port=_free_port(), max_upload_mb=1.0, max_wait_ms=150.0)
    app = create_app(recognizer, options, serve, "overfit")
    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=serve.port, log_level="warning"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    while not running.started:
        time.sleep(0.05)
    clips = [(e["audio"], e["text"]) for e in map(json.loads, open(manifest))]
    yield f"http://127.0.0.1:{serve.port}", recognizer, clips
    running.should_exit = True
    thread.join(10)


def _post(url, path, data=None, response_format="json", timeout=60, **fields):
    with open(path, "rb") as f:
        files = {"file": (os.path.basename(path), f.read() if data is None else data)}
    return httpx.post(f"{url}/v1/audio/transcriptions", files=files,
                      data=dict(response_format=response_format, **fields), timeout=timeout)


def test_the_openai_client_gets_every_response_format(server):
    openai = pytest.importorskip("openai")
    url, recognizer, clips = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    path, text = clips[0]
    expected = recognizer.transcribe(path)[0]
    with open(path, "rb") as f:
        assert client.audio.transcriptions.create(model="whisper-1", file=f).text == text == expected.text
    with open(path, "rb") as f:
        verbose = client.audio.transcriptions.create(model="overfit", file=f, response_format="verbose_json",
                                                     timestamp_granularities=["word", "segment"], language="en",
                                                     temperature=0.3)
    assert verbose.text == text and verbose.language == "english"
    assert verbose.duration == pytest.approx(expected.duration, abs=1e-3)
    assert [(w.word, w.start, w.end) for w in verbose.words] == [(w, round(s, 3), round(e, 3))
                                                                 for w, s, e in expected.words]
    assert verbose.segments[0].text == text and verbose.segments[0].start == verbose.words[0].start
    with open(path, "rb") as f:
        assert client.audio.transcriptions.create(model="m", file=f, response_format="text").strip() == text
    with open(path, "rb") as f:
        srt = client.audio.transcriptions.create(model="m", file=f, response_format="srt")
    assert srt.startswith("1\n00:00:00,") and f"\n{text}\n" in srt
    with open(path, "rb") as f:
        assert client.audio.transcriptions.create(model="m", file=f, response_format="vtt").startswith("WEBVTT\n\n")
    assert [m.id for m in client.models.list().data] == ["overfit"]


def test_health_counts_requests_and_batches(server):
    url, _, clips = server
    before = httpx.get(f"{url}/health").json()
    assert _post(url, clips[1][0]).json() == {"text": clips[1][1]}
    after = httpx.get(f"{url}/health").json()
    assert after["status"] == "ok" and after["requests"] == before["requests"] + 1
    assert sum(after["batches"].values()) == sum(before["batches"].values()) + 1


def test_concurrent_requests_are_decoded_together_and_equal_one_by_one(server):
    url, recognizer, clips = server
    paths = [p for p, _ in clips] * 3
    one_by_one = [recognizer.transcribe(p)[0] for p in paths]
    before = httpx.get(f"{url}/health").json()["batches"]
    with concurrent.futures.ThreadPoolExecutor(len(paths)) as pool:
        replies = list(pool.map(lambda p: _post(url, p, response_format="verbose_json",
                                                **{"timestamp_granularities[]": "word"}).json(), paths))
    assert [r["text"] for r in replies] == [t.text for t in one_by_one]
    assert [[(w["word"], w["start"], w["end"]) for w in r["words"]] for r in replies] == \
        [[(w, round(s, 3), round(e, 3)) for w, s, e in t.words] for t in one_by_one]
    after = httpx.get(f"{url}/health").json()["batches"]
    new = {int(k): v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
    assert sum(k * v for k, v in new.items()) == len(paths) and max(new) > 1  # shared batches, every clip once


def test_a_long_upload_is_cut_like_asr_transcribe_cuts_it_while_the_server_keeps_answering(server, tmp_path):
    url, recognizer, clips = server
    rate = recognizer.sample_rate  # at the model's rate, pieces read from the file equal pieces cut from memory
    gap = np.zeros(rate // 2, np.float32)
    audio = np.concatenate([x for p, _ in clips for x in (load_audio(p, rate), gap)])
    path = str(tmp_path / "long.wav")
    sf.write(path, audio, rate, subtype="FLOAT")
    assert len(audio) / rate > 2 * recognizer.default_chunk_seconds
    expected = recognizer.transcribe(path)[0].text
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reply = pool.submit(_post, url, path)
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        assert reply.result().json()["text"] == expected


@pytest.mark.parametrize("case, status, message", [
    ("no_file", 400, "file: Field required"),
    ("empty_file", 400, "the uploaded file is empty"),
    ("not_audio", 400, "notes.wav: not a readable audio file"),
    ("too_large", 413, "over the upload limit of 1 MB"),
    ("unknown_format", 400, "response_format 'xml' is not one of"),
    ("other_language", 400, "this model transcribes 'en', not 'de'"),
    ("unknown_granularity", 400, "timestamp_granularities: char"),
    ("not_multipart", 400, "file: Field required"),
])
def test_bad_requests_get_a_4xx_json_error_and_the_server_goes_on(server, case, status, message):
    url, _, clips = server
    path = clips[0][0]
    endpoint = f"{url}/v1/audio/transcriptions"
    if case == "no_file":
        reply = httpx.post(endpoint, data={"response_format": "json"})
    elif case == "empty_file":
        reply = _post(url, path, data=b"")
    elif case == "not_audio":
        reply = httpx.post(endpoint, files={"file": ("notes.wav", b"these are not samples\n" * 10)})
    elif case == "too_large":
        reply = _post(url, path, data=os.urandom(2 * 1024 * 1024))
    elif case == "unknown_format":
        reply = _post(url, path, response_format="xml")
    elif case == "other_language":
        reply = _post(url, path, language="de")
    elif case == "unknown_granularity":
        reply = _post(url, path, response_format="verbose_json", **{"timestamp_granularities[]": "char"})
    else:
        reply = httpx.post(endpoint, content=os.urandom(5000), headers={"content-type": "application/octet-stream"})
    assert reply.status_code == status and message in reply.json()["error"]["message"], reply.text
    assert "Traceback" not in reply.text
    assert _post(url, path).json() == {"text": clips[0][1]}


def test_a_burst_of_garbage_leaves_the_server_serving(server):
    url, _, clips = server
    rng = np.random.default_rng(0)
    garbage = [rng.bytes(int(n)) for n in rng.integers(1, 40000, 24)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda data: httpx.post(f"{url}/v1/audio/transcriptions",
                                                        files={"file": ("x.wav", data)}, timeout=30), garbage))
    assert {r.status_code for r in replies} == {400}
    assert _post(url, clips[2][0]).json() == {"text": clips[2][1]}


def test_the_attention_picture_is_one_row_per_character_and_eos(server):
    url, _, clips = server
    path, text = clips[0]
    with open(path, "rb") as f:
        picture = httpx.post(f"{url}/v1/audio/attention", files={"file": ("a.wav", f.read())}, timeout=30).json()
    assert picture["tokens"] == list(text) + ["<eos>"]
    weights = np.array(picture["weights"])
    assert weights.shape[0] == len(text) + 1 and np.allclose(weights.sum(axis=1), 1, atol=1e-2)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_the_web_page_transcribes_an_upload_and_a_recording_in_headless_chromium(server, tmp_path):
    """ASR_SCREENSHOT=docs/serve_page.png keeps the screenshot of the upload's result."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, clips = server
    path, text = clips[3]
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,800",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={path}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 60)
        driver.find_element(By.ID, "file").send_keys(path)
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
        assert driver.find_element(By.ID, "error").text == ""
        assert driver.find_element(By.ID, "transcript").text == text
        words = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#words tr")][1:]
        assert [w.split()[0] for w in words] == text.split()
        assert driver.find_element(By.ID, "attention").get_attribute("data-rows") == str(len(text) + 1)
        shot = os.environ.get("ASR_SCREENSHOT") or str(tmp_path / "page.png")
        assert driver.save_screenshot(shot)
        driver.find_element(By.ID, "record").click()  # Chromium's fake microphone plays the clip
        recorded = re.compile(r"recording… (\d+\.\d) s")
        wait.until(lambda d: float((recorded.match(d.find_element(By.ID, "status").text) or [0, "0"])[1]) >= 1.0)
        driver.find_element(By.ID, "stop").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
        assert driver.find_element(By.ID, "error").text == ""
        status = driver.find_element(By.ID, "status").text
        assert float(status.split()[0]) > 1.0  # the recording reached the server as audio of the right length
    finally:
        driver.quit()
