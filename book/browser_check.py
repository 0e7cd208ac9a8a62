r"""Open every page of a static site in headless Chromium and check how it renders.

    python book/browser_check.py build/book/_build/html [--screenshots DIR]

For each HTML page (served from a local HTTP server, as GitHub Pages would serve it):

* math is typeset: MathJax finished, every formula became typeset math, none is a MathJax
  error, and no raw LaTeX (`\frac`, `\(`, `$x$`, ...) is left in the text a reader sees
  (code blocks and program output excepted);
* every image loaded (decoded, with a non-zero size), and every web font used loaded;
* every link inside the site points to an existing file, and to an existing anchor when it
  has one;
* the console shows no error (console.error, uncaught exceptions, failed loads), no request
  failed, and no request left the local server: nothing is fetched from the network.

A screenshot of the top of each page (1280x1000), one of the whole page at half scale and,
when the page has a figure, one around its first figure are saved for a person to look at.
A page that only redirects (index.html -> intro.html) is checked for its target alone.

The browser is driven with the Chrome DevTools protocol over a WebSocket (the
`websocket-client` package): no WebDriver, so any Chromium or Chrome works, whatever its
version. It is started with a fresh profile and without any background networking.
Exit status 1 when a check fails, 2 when no browser is found.
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BROWSER_NAMES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"]
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-default-browser-check",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--window-size=1280,1000",
]
WIDTH, HEIGHT = 1280, 1000
PAGE_TIMEOUT = 60.0  # seconds for a page to load and typeset its math
# Requests a browser makes on its own, whatever the page: not the site's business.
IGNORED_PATHS = {"/favicon.ico"}
REDIRECT = re.compile(r'<meta\s+http-equiv="refresh"\s+content="\d+;\s*url=([^"]+)"', re.IGNORECASE)


def find_browser() -> str | None:
    """The browser to use: $BROWSER_BIN, else the first of BROWSER_NAMES on the PATH."""
    explicit = os.environ.get("BROWSER_BIN")
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).exists() else None)
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


# ---------------------------------------------------------------- a static file server
class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """A file server that does not log every request."""

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        """Log nothing."""
        pass


class SiteServer:
    """Serve a folder on 127.0.0.1 (a free port) from a thread."""

    def __init__(self, root: Path):
        handler = functools.partial(QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.root = root
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> SiteServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- the DevTools protocol
class CDPError(RuntimeError):
    """The browser did not start, or answered a command with an error."""


class Browser:
    """A headless Chromium with one tab, driven over the DevTools protocol."""

    def __init__(self, executable: str):
        import websocket  # websocket-client

        self.profile = Path(tempfile.mkdtemp(prefix="book-browser-"))
        self.log = open(self.profile / "browser.log", "wb")
        self.proc = subprocess.Popen(
            [
                executable,
                *BROWSER_FLAGS,
                f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise CDPError(f"{executable} did not start; its log: {self.log_tail()}")
            time.sleep(0.1)
        port = port_file.read_text().splitlines()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as reply:
            targets = json.load(reply)
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=PAGE_TIMEOUT, suppress_origin=True, max_size=None
        )
        self.version = ""
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )

    def log_tail(self) -> str:
        """The end of the browser's own log (for error messages)."""
        try:
            return (self.profile / "browser.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def send(self, method: str, params: dict | None = None) -> dict:
        """Send a DevTools command and return its result; keep the events that arrive."""
        self.next_id += 1
        message_id = self.next_id
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params or {}}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise CDPError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for(self, event: str, timeout: float) -> bool:
        """Wait until an event of this name has arrived; False after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if any(e["method"] == event for e in self.events):
                return True
            if time.monotonic() > deadline:
                return False
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                message = json.loads(self.ws.recv())
            except Exception:  # a timeout: check the deadline again
                continue
            finally:
                self.ws.settimeout(PAGE_TIMEOUT)
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str):
        """Evaluate JavaScript in the page, awaiting a promise; return its value."""
        result = self.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "awaitPromise": True,
                "returnByValue": True,
                "timeout": PAGE_TIMEOUT * 1000,
            },
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CDPError(
                f"script failed: {details.get('text')} "
                f"{details.get('exception', {}).get('description', '')}"
            )
        return result["result"].get("value")

    def screenshot(self, path: Path, full_page: bool) -> None:
        """Save the viewport, or the whole page at half scale, as a PNG."""
        params: dict = {"format": "png"}
        if full_page:
            height = min(int(self.evaluate("document.documentElement.scrollHeight")), 16000)
            params.update(
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 0.5},
            )
        data = self.send("Page.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        """Stop the browser and remove its profile."""
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)


# ---------------------------------------------------------------- what runs in the page
# Resolves when MathJax 2 has finished its first typesetting pass (or at once without it).
WAIT_FOR_MATH = """
new Promise((resolve) => {
  const started = Date.now();
  const hasMathJax = () => !!document.querySelector('script[src*="MathJax.js"]');
  (function poll() {
    if (window.MathJax && MathJax.Hub && MathJax.Hub.Register) {
      // A hook that returned a callback would make MathJax wait for it: return nothing.
      MathJax.Hub.Register.StartupHook("End", () => {
        MathJax.Hub.Queue(() => { resolve("done"); });
      });
    } else if (!hasMathJax()) {
      resolve("none");
    } else if (Date.now() - started > TIMEOUT_MS) {
      resolve("timeout");
    } else {
      setTimeout(poll, 50);
    }
  })();
})
""".replace("TIMEOUT_MS", str(int(PAGE_TIMEOUT * 1000)))

# Waits for every image (lazy ones included) and font, then reports on the page.
INSPECT = r"""
(async () => {
  const images = [...document.images];
  for (const img of images) { img.loading = "eager"; }
  await Promise.all(images.map((img) => img.complete ? null : new Promise((done) => {
    img.addEventListener("load", done, {once: true});
    img.addEventListener("error", done, {once: true});
    setTimeout(done, 15000);
  })));
  await Promise.all(images.map((img) => img.decode ? img.decode().catch(() => null) : null));
  await document.fonts.ready;

  const skip = "script, style, noscript, template, textarea, pre, code, kbd, samp, " +
    ".highlight, .cell_output, .output, .jp-OutputArea, .MathJax, .MathJax_Display, " +
    ".MathJax_Preview, .MJX_Assistive_MathML, .MathJax_MathML, mjx-container, .sr-only";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => node.parentElement && node.parentElement.closest(skip)
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  const raw = /\\(?:[A-Za-z]{2,}|[()\[\]])|\$\$|\$[^$\s][^$\n]*[^$\s\\]\$|\$[^$\s]\$/;
  const rawTex = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent;
    const match = text.match(raw);
    if (match && getComputedStyle(node.parentElement).display !== "none") {
      const at = Math.max(0, match.index - 30);
      rawTex.push(text.slice(at, match.index + 50).replace(/\s+/g, " ").trim());
    }
  }

  // Sphinx's formulas (MathJax's own output uses class "math" too, without "notranslate").
  const sphinxMath = [...document.querySelectorAll("span.math.notranslate, div.math.notranslate")];
  const untypeset = sphinxMath.filter((el) => !el.querySelector('script[type^="math/tex"]'))
    .map((el) => el.textContent.slice(0, 60));
  const jax = window.MathJax && MathJax.Hub && MathJax.Hub.getAllJax ? MathJax.Hub.getAllJax() : [];
  const unrendered = jax.filter((j) => !document.getElementById(j.inputID + "-Frame"))
    .map((j) => j.originalText.slice(0, 60));
  const errors = [...document.querySelectorAll(".MathJax .merror, .MathJax .noError, " +
    ".MathJax_Display .merror, .MathJax_Display .noError, .MathJax_Error")]
    .map((el) => el.textContent.slice(0, 80));
  const output = window.MathJax && MathJax.OutputJax && MathJax.OutputJax["HTML-CSS"];

  const brokenImages = images.filter((img) => !(img.complete && img.naturalWidth > 0))
    .map((img) => (img.currentSrc || img.src || "(no src)").slice(0, 100));
  // MathJax_Blank is meant never to load: MathJax measures text in it to tell when its web
  // fonts have arrived (its source is set to a local() name that matches nothing).
  const badFonts = [...document.fonts]
    .filter((f) => f.status === "error" && f.family.replace(/"/g, "") !== "MathJax_Blank")
    .map((f) => f.family);

  const links = [...document.querySelectorAll("a[href]")].map((a) => a.href)
    .filter((h) => h.startsWith(location.origin));
  const ids = [...document.querySelectorAll("[id]")].map((el) => el.id)
    .concat([...document.querySelectorAll("a[name]")].map((el) => el.name));
  const nav = [...document.querySelectorAll("nav a[href], .prev-next-area a[href]")].length;
  return {title: document.title, rawTex, untypeset, unrendered, jaxCount: jax.length, errors,
          mathFont: output ? output.fontInUse || null : null, sphinxMath: sphinxMath.length,
          brokenImages, images: images.length, badFonts, links, ids, nav,
          doctype: document.doctype ? document.doctype.name : null};
})()
"""


# ---------------------------------------------------------------- checking a site
@dataclass
class PageReport:
    """What was found on one page."""

    path: str
    title: str = ""
    problems: list[str] = field(default_factory=list)
    formulas: int = 0
    images: int = 0
    links: int = 0
    screenshot: str = ""


def html_pages(root: Path) -> list[Path]:
    """The pages of the site (not the files under _static/, _sources/ ...)."""
    return sorted(
        p
        for p in root.rglob("*.html")
        if not any(part.startswith("_") for part in p.relative_to(root).parts[:-1])
    )


def redirect_target(page: Path) -> str | None:
    """Where a page that only redirects (<meta http-equiv="refresh">) sends the reader."""
    if page.stat().st_size > 2000:
        return None
    match = REDIRECT.search(page.read_text(encoding="utf-8", errors="replace"))
    return match.group(1).strip() if match else None


def check_page(
    browser: Browser,
    server: SiteServer,
    page: Path,
    shots: Path | None,
) -> tuple[PageReport, list[str], list[str]]:
    """Open one page, check it, save its screenshots; return the report, links and ids."""
    rel = page.relative_to(server.root).as_posix()
    report = PageReport(rel)
    target = redirect_target(page)
    if target is not None:  # e.g. index.html -> intro.html: check the target exists, no more
        report.title = f"redirect to {target}"
        report.links = 1
        if not (page.parent / urllib.parse.urlsplit(target).path).exists():
            report.problems.append(f"redirects to a missing page: {target}")
        return report, [], []
    browser.events.clear()
    browser.send("Page.navigate", {"url": server.base + urllib.parse.quote(rel)})
    if not browser.wait_for("Page.loadEventFired", PAGE_TIMEOUT):
        report.problems.append(f"did not finish loading in {PAGE_TIMEOUT:.0f} s")
    state = browser.evaluate(WAIT_FOR_MATH)
    if state == "timeout":
        report.problems.append("MathJax did not finish typesetting")
    info = browser.evaluate(INSPECT)
    time.sleep(0.2)
    browser.evaluate("0")  # collect the events that arrived meanwhile

    report.title = info["title"]
    report.formulas, report.images = info["jaxCount"], info["images"]
    report.links = len(info["links"])
    if info["doctype"] != "html":
        report.problems.append("no <!DOCTYPE html>: the page renders in quirks mode")
    for text in info["rawTex"][:5]:
        report.problems.append(f"raw LaTeX in the rendered text: ...{text}...")
    if len(info["rawTex"]) > 5:
        report.problems.append(f"... and {len(info['rawTex']) - 5} more pieces of raw LaTeX")
    for text in info["untypeset"][:5]:
        report.problems.append(f"formula not typeset: {text}")
    for text in info["unrendered"][:5]:
        report.problems.append(f"formula parsed but not displayed: {text}")
    for text in info["errors"][:5]:
        report.problems.append(f"MathJax error: {text}")
    if info["jaxCount"] and info["mathFont"] not in ("STIX-Web", "TeX"):
        report.problems.append(f"MathJax typeset without its web fonts (font: {info['mathFont']})")
    for src in info["brokenImages"]:
        report.problems.append(f"image did not load: {src}")
    for family in info["badFonts"]:
        report.problems.append(f"web font did not load: {family}")

    for event in browser.events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
            report.problems.append(f"console error: {text[:200]}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            report.problems.append(f"uncaught exception: {text[:200]}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            if urllib.parse.urlsplit(entry.get("url", "")).path in IGNORED_PATHS:
                continue
            text = f"{entry.get('text', '')[:200]} {entry.get('url', '')}"
            report.problems.append(f"console error: {text}")
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            scheme = urllib.parse.urlsplit(url).scheme
            if scheme in ("http", "https", "ws", "wss") and not url.startswith(server.base):
                report.problems.append(f"request to the network: {url[:200]}")
        elif method == "Network.responseReceived":
            response = params.get("response", {})
            path = urllib.parse.urlsplit(response.get("url", "")).path
            if response.get("status", 200) >= 400 and path not in IGNORED_PATHS:
                report.problems.append(f"HTTP {response['status']} for {response.get('url')}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            report.problems.append(f"a request failed: {params.get('errorText')}")

    if shots is not None:
        name = rel.replace("/", "__").removesuffix(".html")
        browser.evaluate("window.scrollTo(0, 0)")
        browser.screenshot(shots / f"{name}.png", full_page=False)
        browser.screenshot(shots / f"{name}-full.png", full_page=True)
        if info["images"]:  # the first figure, at full size, for a closer look
            browser.evaluate("document.images[0].scrollIntoView({block: 'center'})")
            browser.screenshot(shots / f"{name}-figure.png", full_page=False)
            browser.evaluate("window.scrollTo(0, 0)")
        report.screenshot = str(shots / f"{name}.png")
    return report, info["links"], info["ids"]


def check_site(
    root: Path, browser_path: str, shots: Path | None = None, pages: list[Path] | None = None
) -> list[PageReport]:
    """Check every page under root; return one report per page plus one for the links."""
    root = root.resolve()
    pages = pages if pages is not None else html_pages(root)
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    reports: list[PageReport] = []
    links: dict[str, list[str]] = {}
    ids: dict[str, set[str]] = {}
    with SiteServer(root) as server:
        browser = Browser(browser_path)
        try:
            for page in pages:
                report, page_links, page_ids = check_page(browser, server, page, shots)
                reports.append(report)
                links[report.path] = page_links
                ids[report.path] = set(page_ids)
        finally:
            browser.close()

    link_report = PageReport("(internal links)")
    for source, hrefs in links.items():
        for href in sorted(set(hrefs)):
            parts = urllib.parse.urlsplit(href)
            target = urllib.parse.unquote(parts.path).lstrip("/")
            file = root / target
            if file.is_dir():
                file, target = file / "index.html", (target.rstrip("/") + "/index.html").lstrip("/")
            link_report.links += 1
            if not file.exists():
                link_report.problems.append(f"{source}: link to a missing file: {parts.path}")
            elif parts.fragment and target in ids:
                # A browser looks for the fragment as written, then percent-decoded.
                anchors = {parts.fragment, urllib.parse.unquote(parts.fragment)}
                if not anchors & ids[target]:
                    link_report.problems.append(
                        f"{source}: link to a missing anchor: {target}#{parts.fragment}"
                    )
    reports.append(link_report)
    return reports


def summary(reports: list[PageReport]) -> str:
    """One line per page, then its problems."""
    lines = []
    for r in reports:
        status = "ok  " if not r.problems else "FAIL"
        what = (
            r.title
            if r.title.startswith("redirect")
            else (f"{r.formulas} formulas, {r.images} images, {r.links} links")
        )
        lines.append(f"{status} {r.path}: {what}" + (f" -> {r.screenshot}" if r.screenshot else ""))
        lines += [f"       {p}" for p in r.problems]
    return "\n".join(lines)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder of the static site")
    parser.add_argument("--screenshots", type=Path, default=None, help="where to save PNGs")
    args = parser.parse_args()
    browser = find_browser()
    if browser is None:
        print("no Chromium or Chrome found (set BROWSER_BIN)")
        raise SystemExit(2)
    reports = check_site(args.root, browser, args.screenshots)
    print(summary(reports))
    raise SystemExit(1 if any(r.problems for r in reports) else 0)


if __name__ == "__main__":
    main()
