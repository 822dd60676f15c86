"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol: open a page, wait, screenshot.

Only the standard DevTools HTTP endpoint and one websocket (``websockets``, requirements/test.txt); the browser
listens on 127.0.0.1 and gets a fresh profile per call.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from dexstack.processes import stop_process_group


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(url: str, ready: Callable[[bytes], bool], wait_s: float = 40.0, size: tuple[int, int] = (1280, 800),
               period_s: float = 2.0, timeout_s: float = 90.0) -> bytes:
    """PNG bytes of ``url`` once ``ready(png)`` holds, or the last one after ``wait_s`` seconds of real time (the
    viewer is WebAssembly + WebGL: it needs real time to load and draw, which --virtual-time-budget does not
    give it). ``timeout_s`` bounds one DevTools call: a software-rendered frame of a busy page on a loaded
    2-core machine can take tens of seconds. A screenshot slower than that is skipped, not fatal, until
    ``wait_s``."""
    from websockets.sync.client import connect

    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("chromium is not installed")
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--no-first-run", "--remote-debugging-address=127.0.0.1",
               "--remote-debugging-port=0", f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
               "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist", "about:blank"]
        browser = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout_s
            while not (port_file.exists() and port_file.read_text().strip()):
                if time.monotonic() > deadline or browser.poll() is not None:
                    raise RuntimeError("chromium did not open its DevTools port")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                page = next(t for t in json.load(r) if t["type"] == "page")
            with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
                ids = iter(range(1, 1000))

                def call(method: str, **params):
                    i = next(ids)
                    ws.send(json.dumps({"id": i, "method": method, "params": params}))
                    while True:
                        reply = json.loads(ws.recv(timeout=timeout_s))
                        if reply.get("id") == i:
                            if "error" in reply:
                                raise RuntimeError(f"{method}: {reply['error']}")
                            return reply.get("result", {})

                call("Page.enable")
                call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1,
                     mobile=False)
                call("Page.navigate", url=url)
                start = time.monotonic()
                png = None
                while True:
                    time.sleep(period_s)
                    try:
                        png = base64.b64decode(call("Page.captureScreenshot", format="png")["data"])
                    except TimeoutError:  # one frame slower than timeout_s: the page may still finish drawing
                        if time.monotonic() - start <= wait_s:
                            continue
                        if png is None:
                            raise
                        return png
                    elapsed = time.monotonic() - start
                    if ready(png) or elapsed > wait_s:
                        return png
        finally:  # the whole group: renderer/GPU children still write into the profile after the main process
            stop_process_group(browser)


