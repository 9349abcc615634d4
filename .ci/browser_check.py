"""Open every page of the built book in headless Chromium and check it as a reader would see it.

For each page: no JavaScript errors, every image loaded, every embedded widget rendered;
a full-page screenshot goes to ``<out>/<page>.png``. The site is served on 127.0.0.1.
The widget libraries the pages load from public CDNs are served from a local npm copy
(``--npm``), so the check runs without internet; any other outside request is refused.

    python .ci/browser_check.py _build/html --npm /tmp/npm/node_modules --out _build/screenshots
"""
import argparse
import functools
import http.server
import re
import sys
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# CDN path -> path inside node_modules
CDN = {r"https://cdn\.jsdelivr\.net/npm/((?:@[^/@]+/)?[^/@]+)@[^/]+/(.*)": r"\1/\2"}
# A known defect of sphinx-thebe 0.3.1 under Jupyter Book 1: its config script is injected
# twice, and the second `const` declaration throws. Thebe is not used by this book.
KNOWN = ("Identifier 'THEBE_JS_URL' has already been declared",)


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    handler = functools.partial(handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def route(npm: Path, refused: list):
    def handle(r):
        url = r.request.url
        if url.startswith("http://127.0.0.1"):
            return r.continue_()
        for pattern, local in CDN.items():
            m = re.fullmatch(pattern, url.split("?")[0])
            if m:
                path = npm / m.expand(local)
                if path.is_file():
                    return r.fulfill(path=str(path))
        refused.append(url)
        return r.abort()
    return handle


def check(page, url: str) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: any(k in str(e) for k in KNOWN) or errors.append(f"JavaScript error: {e}"))
    page.on("console", lambda m: m.type == "error" and "Failed to load resource" not in m.text
            and errors.append(f"console error: {m.text}"))
    page.goto(url, wait_until="networkidle")
    expected = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
    if expected:
        try:
            page.wait_for_function("document.querySelectorAll('.jupyter-widgets.widget-container, .widget-vbox, .widget-hbox').length >= 1", timeout=15000)
        except Exception:
            pass
        rendered = page.evaluate("document.querySelectorAll('.jupyter-widgets').length")
        if rendered == 0:
            errors.append(f"{expected} widget(s) embedded, none rendered")
    broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
    errors += [f"image did not load: {src}" for src in broken]
    return errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("site", type=Path)
    ap.add_argument("--npm", type=Path, required=True, help="node_modules with @jupyter-widgets/html-manager and requirejs")
    ap.add_argument("--out", type=Path, default=Path("_build/screenshots"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    pages = sorted(args.site.glob("book/*.html")) + [args.site / "index.html"]
    args.out.mkdir(parents=True, exist_ok=True)
    server, base = serve(args.site)
    failures = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS)
        for html in pages:
            rel = html.relative_to(args.site).as_posix()
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            refused: list[str] = []
            page.route("**/*", route(args.npm, refused))
            errors = check(page, f"{base}/{rel}")
            page.screenshot(path=str(args.out / (html.stem + ".png")), full_page=True)
            n_img = page.evaluate("document.images.length")
            n_widgets = page.evaluate("document.querySelectorAll('.jupyter-widgets').length")
            page.close()
            status = "ok" if not errors else "FAILED"
            failures += bool(errors)
            print(f"{status:6s} {rel}: {n_img} images, {n_widgets} widget elements"
                  + (f", {len(refused)} outside requests refused" if refused else ""))
            for e in errors:
                print(f"       {e}")
        browser.close()
    server.shutdown()
    print(f"{len(pages) - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
