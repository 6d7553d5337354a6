"""Load test of `asr serve` on loopback: C concurrent clients each send real clips back to back for a
fixed time; requests/s, audio-seconds/s, p50/p99 latency, errors and the batch sizes the server
reached, against decoding the same clips one by one in one process (no server, no HTTP).

    python bench/serve.py --model exp/so30/model.pt --clips exp/so30/data/test.jsonl \
        [--clients 1 8 32] [--seconds 30] [--max-wait-ms 0] [--threads N] [--screenshot docs/serve_page.png]

The server is the real command (`python -m asr_cli serve`), started here and stopped at the end.
With --screenshot, headless Chromium also transcribes the first clip on the web page and saves it.
Prints markdown rows for BENCHMARKS.md."""
import argparse
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import httpx
import torch

from asr.transcribe import Recognizer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clips_of(path: str, count: int):
    """(audio path, duration) of the manifest's first `count` lines."""
    with open(path, encoding="utf-8") as f:
        entries = [json.loads(line) for line in itertools.islice(f, count)]
    return [(e["audio"], e["duration"]) for e in entries]


def percentile(values, q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def load(url: str, clips, clients: int, seconds: float):
    """Each client sends clips (each starting at its own place in the list) until time is up."""
    latencies, audio, errors = [], [], []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(k: int) -> None:
        with httpx.Client(timeout=300) as http:
            for i in itertools.count(k * len(clips) // clients):
                if time.perf_counter() >= deadline:
                    return
                path, duration = clips[i % len(clips)]
                with open(path, "rb") as f:
                    data = f.read()
                start = time.perf_counter()
                reply = http.post(f"{url}/v1/audio/transcriptions", files={"file": (os.path.basename(path), data)})
                with lock:
                    (latencies if reply.status_code == 200 else errors).append(time.perf_counter() - start)
                    audio.append(duration if reply.status_code == 200 else 0.0)

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, sum(audio), len(errors), time.perf_counter() - start


def row(name: str, latencies, audio: float, errors: int, wall: float, batches: str) -> str:
    return (f"| {name} | {len(latencies) / wall:.2f} | {audio / wall:.1f} | {1000 * statistics.median(latencies):.0f} | "
            f"{1000 * percentile(latencies, 0.99):.0f} | {errors} | {batches} |")


def batch_summary(before: dict, after: dict) -> str:
    sizes = {int(k): v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
    pieces = sum(k * v for k, v in sizes.items())
    return f"mean {pieces / max(1, sum(sizes.values())):.1f}, max {max(sizes, default=0)}"


def screenshot(url: str, clip: str, path: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options)
    try:
        driver.get(url)
        driver.find_element(By.ID, "file").send_keys(os.path.abspath(clip))
        driver.find_element(By.ID, "send").click()
        WebDriverWait(driver, 120).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
                                         in ("done", "error"))
        print(f"page transcript: {driver.find_element(By.ID, 'transcript').text!r}", file=sys.stderr)
        driver.save_screenshot(path)
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--lm", help="LM file the server fuses (as the recipe decodes)")
    parser.add_argument("--clips", required=True, help="manifest whose audio the clients send")
    parser.add_argument("--count", type=int, default=64, help="clips taken from the manifest")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=30.0, help="per concurrency level")
    parser.add_argument("--max-wait-ms", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads, in process and in the server (0: default)")
    parser.add_argument("--screenshot", help="save the web page transcribing the first clip here (PNG)")
    parser.add_argument("--screenshot-clip", help="the clip for the screenshot (default: the first)")
    args = parser.parse_args()
    clips = clips_of(args.clips, args.count)
    if args.threads:
        torch.set_num_threads(args.threads)

    recognizer = Recognizer.load(args.model, lm_path=args.lm)
    options = recognizer.options()
    recognizer.transcribe(clips[0][0], options)  # warm-up
    latencies, audio, deadline = [], 0.0, time.perf_counter() + args.seconds
    start = time.perf_counter()
    for path, duration in itertools.cycle(clips):
        if time.perf_counter() >= deadline:
            break
        t = time.perf_counter()
        recognizer.transcribe(path, options)
        latencies.append(time.perf_counter() - t)
        audio += duration
    rows = [row("one by one, in process (no server)", latencies, audio, 0, time.perf_counter() - start, "1")]
    del recognizer

    port = free_port()
    command = [sys.executable, "-m", "asr_cli", "serve", "--model", args.model, "--port", str(port),
               "--max-wait-ms", str(args.max_wait_ms), "--threads", str(args.threads)] + (["--lm", args.lm] if args.lm else [])
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        load(url, clips[:1], 1, 1.0)  # warm-up
        for clients in args.clients:
            before = httpx.get(f"{url}/health").json()["batches"]
            latencies, audio, errors, wall = load(url, clips, clients, args.seconds)
            after = httpx.get(f"{url}/health").json()["batches"]
            rows.append(row(f"asr serve, {clients} client{'s' if clients > 1 else ''}", latencies, audio, errors, wall,
                            batch_summary(before, after)))
        if args.screenshot:
            screenshot(url, args.screenshot_clip or clips[0][0], args.screenshot)
    finally:
        server.terminate()
        server.wait(30)
    print("| | requests/s | audio-s/s | p50 latency (ms) | p99 latency (ms) | errors | batch size |")
    print("|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
