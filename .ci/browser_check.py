"""Open every page of the built book in headless Chromium and check it as a reader would see it.

For each page: no JavaScript errors, every image loaded, every embedded widget rendered,
and every control of every explorer responds: moving it (a key press on a slider, another
option of a dropdown) changes the picture the explorer shows, with no kernel behind the
page; a full-page screenshot goes to ``<out>/<page>.png``. Then the atlas (``atlas/index.json``):
for each network a unit's permalink (``atlas.html#conv3/17``) must open that unit, name it
and load its images within the first-load budget; a unit that never fires must say so;
permalinks to a layer or a channel that do not exist must list those that do. The site is
served on 127.0.0.1.
The widget libraries the pages load from public CDNs are served from a local npm copy
(``--npm``), so the check runs without internet; any other outside request is refused.

    python .ci/browser_check.py _build/html --npm /tmp/npm/node_modules --out _build/screenshots
"""
import argparse
import functools
import gzip
import http.server
import json
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
    errors += figure_errors(page)
    bars = page.evaluate("document.querySelectorAll('.widget-hprogress, .widget-vprogress').length")
    if bars:   # a finished progress bar on a static page says nothing and leaves a gap
        errors.append(f"{bars} progress bar(s) on the page")
    for line in page.evaluate(CUT_OFF):
        errors.append(f"code or output runs past the column's edge: {line!r}")
    broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
    errors += [f"image did not load: {src}" for src in broken]
    return errors


# Code and printed output wider than their box (a reader would have to scroll sideways,
# or misses the end): the longest line of each.
CUT_OFF = """() => Array.from(document.querySelectorAll('div.cell pre'))
    .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
    .map(e => e.innerText.split('\\n').reduce((a, b) => b.length > a.length ? b : a, '').slice(0, 80))"""


# The article's pictures, less the explorers' views (they change as controls move), the
# atlas's tiles (labelled by the atlas itself) and the theme's buttons (the launch logos):
# [src, alt, has a caption].
PICTURES = """() => Array.from(document.querySelectorAll('article img, main img'))
    .filter(i => !i.closest('.jupyter-widgets, #atlas, header, nav, .bd-header-article'))
    .map(i => { const f = i.closest('figure');
                return [i.getAttribute('src') || '', (i.getAttribute('alt') || '').trim(),
                        !!(f && f.querySelector('figcaption'))]; })"""
FILE_NAME = re.compile(r"(^|/)[\w.-]+\.(png|jpe?g|svg|gif|webp)$|^[0-9a-f]{16,}", re.I)


def figure_errors(page) -> list[str]:
    """A picture needs alt text that describes it (not a file name) and a caption."""
    errors = []
    for src, alt, captioned in page.evaluate(PICTURES):
        name = src.rsplit("/", 1)[-1][:40]
        if not alt or FILE_NAME.search(alt) or alt == src:
            errors.append(f"image without a descriptive alt text: {name} (alt {alt[:40]!r})")
        if not captioned:
            errors.append(f"figure without a caption: {name}")
    return errors


# What an explorer shows now: a short signature of each visible image and HTML view.
SHOWN = """el => Array.from(el.querySelectorAll('img, .widget-html-content'))
    .filter(e => e.offsetParent !== null)
    .map(e => e.src ? e.src.length + ':' + e.src.slice(-48) : e.innerHTML.length + ':'
         + e.innerHTML.slice(-200)).join('|')"""
CONTROLS = ".widget-dropdown select, .widget-hslider .noUi-handle"


def move(control) -> None:
    """Move one control by one step (back if it is at its end) or to another option."""
    if control.evaluate("c => c.tagName") == "SELECT":
        n, i = control.evaluate("c => [c.options.length, c.selectedIndex]")
        control.select_option(index=(i + 1) % n)
        return
    now, top = control.evaluate("h => [h.getAttribute('aria-valuenow'), h.getAttribute('aria-valuemax')]")
    control.focus()
    control.press("ArrowLeft" if now == top else "ArrowRight")


def check_explorers(page) -> tuple[int, list[str]]:
    """Move every visible control of every widget output; each must change what it shows."""
    errors, moved = [], 0
    outputs = page.locator(".cell_output").filter(has=page.locator(".jupyter-widgets"))
    for o in range(outputs.count()):
        output = outputs.nth(o)
        controls = output.locator(CONTROLS)
        for c in range(controls.count()):
            control = controls.nth(c)
            if not control.is_visible():
                continue
            before = output.evaluate(SHOWN)
            move(control)
            page.wait_for_timeout(150)
            after = output.evaluate(SHOWN)
            moved += 1
            if not after or after == before:
                label = control.evaluate("c => c.closest('.widget-inline-hbox, .widget-dropdown')"
                                         "?.querySelector('label')?.textContent || c.tagName")
                errors.append(f"explorer {o + 1}: moving its control '{label}' changed nothing shown")
    return moved, errors


FIRST_LOAD = 1.5e6     # bytes a first visit to a unit's permalink may cost, compressed as served


def atlas_checks(site: Path) -> list[tuple[str, str, list[str]]]:
    """(name, fragment, texts the page must show) for every network of the built atlas."""
    index = json.loads((site / "atlas" / "index.json").read_text())
    checks = []
    for i, net in enumerate(index["networks"]):
        manifest = json.loads((site / "atlas" / net["manifest"]).read_text())
        head = "" if i == 0 else net["name"] + "/"
        layers = list(manifest["layers"])
        layer = "conv3" if "conv3" in layers else layers[0]
        channels = manifest["layers"][layer]["channels"]
        c = 17 % channels
        checks.append((f"{net['name']}-unit", f"#{head}{layer}/{c}", [f"{net['title']} · {layer} · unit {c}"]))
        dead = [(name, u["channel"]) for name, info in manifest["layers"].items()
                for u in info["units"] if not u["top"]]
        if dead:
            name, c = dead[0]
            checks.append((f"{net['name']}-dead", f"#{head}{name}/{c}", ["This unit never fires", f"unit {c}"]))
        first = manifest["layers"][layers[0]]["channels"]
        checks.append((f"{net['name']}-bad-layer", f"#{head}conv9/0",
                       ["no layer “conv9”", f"{layers[0]} (channels 0–{first - 1})"]))
        checks.append((f"{net['name']}-bad-channel", f"#{head}{layer}/{channels + 5}",
                       [f"no channel “{channels + 5}”", f"its channels are 0–{channels - 1}"]))
    return checks


def check_atlas_page(page, url: str, texts: list[str]) -> tuple[list[str], dict]:
    """Errors on one atlas view, and the bytes its first load fetched: ``raw``, and
    ``gzip`` as a host that compresses text (GitHub Pages) sends them; ``atlas`` is the
    atlas's own share (its data and page script), raw."""
    fetched = []
    page.on("response", lambda r: fetched.append(r))
    errors = check(page, url)
    page.wait_for_function("!document.querySelector('#atlas p') || "
                           "!document.querySelector('#atlas p').textContent.startsWith('Loading')")
    shown = page.inner_text("#atlas")
    errors += [f"the page does not say {t!r}" for t in texts if t not in shown]
    size = {"raw": 0, "gzip": 0, "atlas": 0}
    for r in fetched:
        try:
            body = r.body()
        except Exception:       # redirects and aborted requests have no body
            continue
        text = re.search(r"text|javascript|json|css|svg", r.headers.get("content-type", ""))
        size["raw"] += len(body)
        size["gzip"] += len(gzip.compress(body)) if text else len(body)
        if "/atlas/" in r.url or "/_static/atlas." in r.url:
            size["atlas"] += len(body)
    return errors, size


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
            moved, unmoved = check_explorers(page)
            errors += unmoved
            n_img = page.evaluate("document.images.length")
            n_widgets = page.evaluate("document.querySelectorAll('.jupyter-widgets').length")
            page.close()
            status = "ok" if not errors else "FAILED"
            failures += bool(errors)
            print(f"{status:6s} {rel}: {n_img} images, {n_widgets} widget elements, {moved} controls moved"
                  + (f", {len(refused)} outside requests refused" if refused else ""))
            for e in errors:
                print(f"       {e}")
        checks = atlas_checks(args.site) if (args.site / "atlas" / "index.json").exists() else []
        for name, fragment, texts in checks:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", route(args.npm, []))
            errors, size = check_atlas_page(page, f"{base}/book/atlas.html{fragment}", texts)
            if name.endswith("-unit"):
                images = page.evaluate("document.querySelectorAll('.atlas-tile img').length")
                if images == 0:
                    errors.append("the unit's view shows no tiles")
                if size["gzip"] > FIRST_LOAD:
                    errors.append(f"first load sent {size['gzip'] / 1e6:.2f} MB, more than {FIRST_LOAD / 1e6} MB")
            page.screenshot(path=str(args.out / f"atlas-{name}.png"))
            page.close()
            failures += bool(errors)
            print(f"{'ok' if not errors else 'FAILED':6s} atlas.html{fragment}: first load "
                  f"{size['gzip'] / 1e6:.2f} MB compressed ({size['raw'] / 1e6:.2f} MB raw, "
                  f"of which the atlas {size['atlas'] / 1e6:.2f} MB)")
            for e in errors:
                print(f"       {e}")
        browser.close()
    server.shutdown()
    print(f"{len(pages) + len(checks) - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
