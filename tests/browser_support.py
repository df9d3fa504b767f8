"""Drive Debian's Chromium with Playwright: shared helpers for the browser tests.

Playwright's own browser download is never used (it needs the internet); the system
``chromium`` from apt is launched through ``executable_path`` instead. Install it with
``bash tools/install_system_deps.sh``.

Helpers:

- :func:`chromium_path` / :func:`launch`: the system browser with the flags that keep it quiet
  and offline;
- :func:`serve_directory`: a static HTTP server on 127.0.0.1 for a built site;
- :class:`PageWatch`: records console errors, page errors, failed requests, HTTP errors and
  every request that leaves 127.0.0.1;
- :func:`wait_for_math`: wait until MathJax has typeset the page and report what it found;
- :class:`JupyterLab`: a JupyterLab server from the venv on 127.0.0.1 with a token and
  per-run configuration, data and runtime folders.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT_DIR = ROOT / "build" / "screenshots"

#: Flags that kept headless Chromium quiet and offline (measured; see the facts file).
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
)

#: Full-page screenshots came out shifted at 1280x720; 1280x1000 is fine.
VIEWPORT = {"width": 1280, "height": 1000}

LOCAL_HOSTS = ("127.0.0.1",)


def chromium_path() -> str | None:
    """Path of the system Chromium (``$COURSE_CHROMIUM`` overrides), or None if not installed."""
    override = os.environ.get("COURSE_CHROMIUM")
    if override:
        return override if Path(override).exists() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def launch(playwright: Any) -> Any:
    """Launch headless system Chromium with Playwright; raise RuntimeError if it is missing."""
    path = chromium_path()
    if path is None:
        raise RuntimeError("Chromium is not installed: run `bash tools/install_system_deps.sh` "
                           "(Debian's chromium package; Playwright's download is never used)")
    return playwright.chromium.launch(executable_path=path, headless=True, args=list(CHROMIUM_ARGS))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def serve_directory(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1; yield the base URL (ending in '/')."""
    if not Path(folder).is_dir():
        raise ValueError(f"folder does not exist: {folder}")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def is_local(url: str) -> bool:
    """True for URLs that do not leave the machine (127.0.0.1, data:, blob:, about:)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about", "chrome", "chrome-extension"):
        return True
    return parts.hostname in LOCAL_HOSTS


@dataclass
class PageWatch:
    """Collects what went wrong on a page while it is used. Attach with :meth:`attach`."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    http_errors: list[str] = field(default_factory=list)
    ignore_http: tuple[str, ...] = ()

    def attach(self, page: Any) -> PageWatch:
        page.on("console", self._on_console)
        page.on("pageerror", lambda err: self.page_errors.append(str(err)))
        page.on("request", self._on_request)
        page.on("requestfailed", lambda req: self.failed_requests.append(
            f"{req.url} ({req.failure})"))
        page.on("response", self._on_response)
        return self

    def _on_console(self, msg: Any) -> None:
        if msg.type == "error":
            self.console_errors.append(f"{msg.text} @ {msg.location.get('url', '')}")

    def _on_request(self, req: Any) -> None:
        if not is_local(req.url):
            self.external_requests.append(req.url)

    def _on_response(self, resp: Any) -> None:
        if resp.status >= 400 and not any(s in resp.url for s in self.ignore_http):
            self.http_errors.append(f"{resp.status} {resp.url}")

    def problems(self) -> list[str]:
        """Everything recorded, one line each (empty when the page was clean)."""
        return ([f"console error: {e}" for e in self.console_errors]
                + [f"page error: {e}" for e in self.page_errors]
                + [f"request left 127.0.0.1: {u}" for u in self.external_requests]
                + [f"request failed: {u}" for u in self.failed_requests]
                + [f"HTTP error: {u}" for u in self.http_errors])


_MATH_REPORT_JS = """() => {
  const main = document.querySelector('main') || document.body;
  const mathNodes = Array.from(main.querySelectorAll('.math'));
  const untypeset = mathNodes.filter(n => !n.querySelector('mjx-container')).length;
  const clone = main.cloneNode(true);
  clone.querySelectorAll('pre, code, mjx-container, script, style, .highlight, .output')
       .forEach(n => n.remove());
  return {
    mathNodes: mathNodes.length,
    containers: main.querySelectorAll('mjx-container').length,
    untypeset: untypeset,
    merrors: main.querySelectorAll('mjx-merror').length,
    text: clone.innerText,
  };
}"""


def wait_for_math(page: Any, timeout_ms: int = 20000) -> dict[str, Any]:
    """Wait for MathJax to finish typesetting; return counts and the page's prose text.

    Returns ``mathNodes`` (Sphinx math elements), ``containers`` (MathJax output elements),
    ``untypeset`` (math elements without MathJax output), ``merrors`` (MathJax TeX errors) and
    ``text`` (the main text without code, outputs and typeset math, to search for raw
    delimiters). Raises Playwright's TimeoutError if MathJax never finishes.
    """
    has_math = page.evaluate("() => document.querySelectorAll('main .math').length > 0")
    if has_math:
        page.wait_for_function(
            "() => window.MathJax && MathJax.startup && MathJax.startup.promise "
            "&& document.querySelectorAll('mjx-container').length > 0", timeout=timeout_ms)
        page.evaluate("() => MathJax.startup.promise")
    return page.evaluate(_MATH_REPORT_JS)


def raw_math_left(text: str) -> list[str]:
    r"""Pieces of ``text`` that look like untypeset TeX: ``\(``, ``\[``, ``$$`` or ``$x$``."""
    import re

    found = [m.group(0) for m in re.finditer(r"\\\(|\\\[|\$\$", text)]
    # "$...$" with no space just inside the dollars ("costs $2 and $3" does not match)
    found += [m.group(0) for m in re.finditer(r"\$[^\s$][^$\n]{0,200}?(?<=[^\s$])\$", text)]
    return found


def broken_images(page: Any) -> list[str]:
    """The ``src`` of every image on the page that did not load (natural width 0)."""
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)",
                           timeout=15000)
    return page.evaluate("() => Array.from(document.images)"
                         ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")


def screenshot(page: Any, name: str, folder: Path = SCREENSHOT_DIR) -> Path:
    """Save a full-page PNG screenshot as ``folder/name.png`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# --------------------------------------------------------------------------- JupyterLab


class JupyterLab:
    """A JupyterLab server from this venv, on 127.0.0.1 with a random token.

    Everything it writes (configuration, user settings, workspaces, runtime files) goes under
    ``state_dir``; the news prompt and update checks are off; ``--allow-root`` is added as root;
    ``server_args`` are added to the command line (e.g. ``tools.formgrader.server_args()``).
    Use as a context manager; :attr:`url` gives ``/lab/tree/<path>?reset&token=...`` URLs.
    """

    def __init__(self, root_dir: Path, state_dir: Path, startup_timeout: float = 90.0,
                 kernel_env: dict[str, str] | None = None, server_args: Sequence[str] = ()) -> None:
        self.root_dir = Path(root_dir)
        self.kernel_env = dict(kernel_env or {})
        self.server_args = list(server_args)
        self.state_dir = Path(state_dir)
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.token = os.urandom(16).hex()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.state_dir / "jupyterlab.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, rel_path: str) -> str:
        """URL that opens ``rel_path`` (relative to root_dir) in a fresh workspace."""
        return f"{self.base}/lab/tree/{rel_path}?reset&token={self.token}"

    def _write_settings(self) -> dict[str, str]:
        config = self.state_dir / "config"
        settings = config / "lab" / "user-settings" / "@jupyterlab"
        (settings / "apputils-extension").mkdir(parents=True, exist_ok=True)
        (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        # No news feed, no update check (both would try the internet and prompt the user).
        (config / "jupyter_lab_config.json").write_text(json.dumps({"LabApp": {
            "news_url": None,
            "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate"}}))
        env = dict(os.environ)
        env.update(JUPYTER_CONFIG_DIR=str(config), JUPYTER_DATA_DIR=str(self.state_dir / "data"),
                   JUPYTER_RUNTIME_DIR=str(self.state_dir / "runtime"),
                   JUPYTERLAB_WORKSPACES_DIR=str(self.state_dir / "workspaces"),
                   JUPYTER_PLATFORM_DIRS="1", PYTHONWARNINGS="ignore")
        if self.kernel_env:
            # A per-run "python3" kernelspec (found before the built-in one) carrying the extra
            # variables: the server's own environment is not enough, because nbgrader's
            # Validate removes NBGRADER_EXECUTION from it after each validation.
            # JUPYTER_PATH is searched before the venv's own kernelspec (which wins over
            # JUPYTER_DATA_DIR inside a virtual environment).
            spec = self.state_dir / "jupyter-path" / "kernels" / "python3"
            env["JUPYTER_PATH"] = os.pathsep.join(
                [str(self.state_dir / "jupyter-path")]
                + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p])
            spec.mkdir(parents=True, exist_ok=True)
            (spec / "kernel.json").write_text(json.dumps({
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (ipykernel)", "language": "python",
                "metadata": {"debugger": True}, "env": self.kernel_env}))
        return env

    def start(self) -> JupyterLab:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = self._write_settings()
        jupyter = Path(sys.executable).parent / "jupyter"
        cmd = [str(jupyter), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root_dir}",
               f"--LabApp.workspaces_dir={self.state_dir / 'workspaces'}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        cmd += self.server_args
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, cwd=self.root_dir, env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n"
                                   + self.log_path.read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}",
                                            timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer within {self.startup_timeout:.0f} s:\n"
                           + self.log_path.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def __enter__(self) -> JupyterLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Yield a launched headless system Chromium (Playwright ``Browser``); close it afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            yield browser
        finally:
            browser.close()


# --------------------------------------------------------------------------- a notebook in JupyterLab

_STATUS_JS = "() => (document.querySelector('#jp-main-statusbar') || {innerText: ''}).innerText"

_CELLS_JS = """() => Array.from(document.querySelectorAll('.jp-NotebookPanel .jp-Cell')).map(c => ({
  type: c.classList.contains('jp-CodeCell') ? 'code'
        : c.classList.contains('jp-MarkdownCell') ? 'markdown' : 'raw',
  prompt: ((c.querySelector('.jp-InputPrompt') || {}).textContent || '').trim(),
  errors: Array.from(c.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
      .map(o => o.textContent),
  output: Array.from(c.querySelectorAll('.jp-OutputArea-output')).map(o => o.textContent).join('\\n'),
}))"""


class NotebookDriver:
    """Drive one notebook open in JupyterLab the way a student does (menus, toolbar, editor).

    Waits follow what was measured: every cell rendered and the kernel reported
    ``| Idle`` in the status bar before Run All; a run is over when the prompts changed,
    no ``[*]`` is left and the kernel is idle again.
    """

    def __init__(self, page: Any, n_cells: int, timeout_ms: int = 180_000) -> None:
        self.page = page
        self.n_cells = n_cells
        self.timeout_ms = timeout_ms

    def open(self, url: str) -> NotebookDriver:
        """Load ``url`` and wait until the notebook is drawn and its kernel is idle."""
        self.page.goto(url)
        self.page.wait_for_function(
            "n => document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length >= n",
            arg=self.n_cells, timeout=60_000)
        self.wait_idle(60_000)
        return self

    def status(self) -> str:
        return str(self.page.evaluate(_STATUS_JS))

    def wait_idle(self, timeout_ms: int | None = None) -> None:
        self.page.wait_for_function(
            "() => { const s = (document.querySelector('#jp-main-statusbar') || {}).innerText"
            " || ''; return /\\|\\s*Idle/.test(s); }", timeout=timeout_ms or self.timeout_ms)

    def cells(self) -> list[dict[str, Any]]:
        """One dict per cell: type, prompt ('[3]:', '[*]:'), error/stderr texts, output text."""
        return list(self.page.evaluate(_CELLS_JS))

    def menu(self, top: str, entry: str) -> None:
        """Click menu ``top`` then its entry whose label is exactly ``entry``."""
        import re

        self.page.locator(".lm-MenuBar-itemLabel").filter(
            has_text=re.compile(f"^{re.escape(top)}$")).click()
        self.page.locator(".lm-Menu-itemLabel").filter(
            has_text=re.compile(f"^{re.escape(entry)}$")).first.click()

    def _run(self, entry: str) -> None:
        before = [c["prompt"] for c in self.cells()]
        self.menu("Run", entry)
        self.page.wait_for_function(
            """before => {
                const s = (document.querySelector('#jp-main-statusbar') || {}).innerText || '';
                const now = Array.from(document.querySelectorAll('.jp-NotebookPanel .jp-Cell'))
                    .map(c => ((c.querySelector('.jp-InputPrompt') || {}).textContent || '').trim());
                return /\\|\\s*Idle/.test(s) && !now.some(p => p.includes('*'))
                    && JSON.stringify(now) !== JSON.stringify(before);
            }""", arg=before, timeout=self.timeout_ms)

    def select(self, index: int) -> None:
        """Select cell ``index`` (command mode) by clicking its prompt area."""
        cell = self.page.locator(".jp-NotebookPanel .jp-Cell").nth(index)
        cell.scroll_into_view_if_needed()
        cell.locator(".jp-InputPrompt").first.click()

    def run_all(self, continue_after_errors: bool = True) -> list[dict[str, Any]]:
        """Run > Run All Cells; after an error, go on with the cells below it (as a student
        would), until every code cell has run. Returns :meth:`cells`."""
        self._run("Run All Cells")
        start = 0
        for _ in range(self.n_cells):
            cells = self.cells()
            if not continue_after_errors:
                return cells
            failed = next((i for i in range(start, len(cells))
                           if cells[i]["type"] == "code" and cells[i]["errors"]), None)
            if failed is None or not any(c["type"] == "code" for c in cells[failed + 1:]):
                return cells
            self.select(failed + 1)
            self._run("Run Selected Cell and All Below")
            start = failed + 1
        return self.cells()

    def set_cell_text(self, index: int, text: str) -> None:
        """Replace the code of cell ``index`` through its editor, as if pasted."""
        cell = self.page.locator(".jp-NotebookPanel .jp-Cell").nth(index)
        cell.scroll_into_view_if_needed()
        cell.locator(".cm-content").click()
        self.page.keyboard.press("Control+a")
        self.page.keyboard.insert_text(text)
        self.page.keyboard.press("Escape")

    def save(self) -> None:
        self.page.keyboard.press("Control+s")
        self.page.wait_for_timeout(500)

    def validate(self) -> tuple[str, str]:
        """Click nbgrader's Validate toolbar button; return ('failed'|'success', dialog text)."""
        self.page.locator(".jp-NotebookPanel-toolbar .validate-button").first.click()
        body = self.page.locator(".jp-Dialog .validation-failed, .jp-Dialog .validation-success")
        body.first.wait_for(timeout=self.timeout_ms)
        kind = "failed" if self.page.locator(".jp-Dialog .validation-failed").count() else "success"
        text = self.page.locator(".jp-Dialog").first.inner_text()
        self.page.keyboard.press("Escape")
        self.page.locator(".jp-Dialog").first.wait_for(state="detached", timeout=10_000)
        return kind, text
