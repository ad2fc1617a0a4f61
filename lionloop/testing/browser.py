"""Open a report in headless Chromium: check every plot rendered, collect errors, take a screenshot.

Used by the browser test and to make the README's screenshot. Needs the `playwright` package (dev
extra) and a Chromium executable: Debian's `chromium`, installed by scripts/setup_browser.sh
(Playwright's own browser download is not used).

    python -m lionloop.testing.browser report.html shot.png [--full]
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# Per plot div: its traces, the SVG layers drawn, and the data marks (points, bars, lines) drawn.
_PLOTS_JS = """() => [...document.querySelectorAll('.plotly-graph-div')].map(d => ({
    id: d.id,
    traces: (d.data || []).length,
    main_svg: d.querySelectorAll('.main-svg').length,
    drawn_traces: d.querySelectorAll('g.trace').length,
    marks: d.querySelectorAll('g.trace path.point, g.trace .point path, g.trace path.js-line').length,
}))"""


def find_chromium() -> str | None:
    """$LIONLOOP_CHROMIUM, else chromium on PATH, else None."""
    env = os.environ.get("LIONLOOP_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def inspect_report(
    html: Path, png: Path | None = None, *, executable: str | None = None, width: int = 1440,
    height: int = 900, full_page: bool = False, clip: dict[str, float] | None = None,
    follow_first_link: bool = True,
) -> dict[str, Any]:
    """Load `html` from disk with the network blocked; report plots, console errors, requests.

    Any request that is not to the file itself is aborted and listed (a self-contained report
    makes none). When `follow_first_link`, the first hardest-instruction link is clicked and
    the URL fragment it lands on is returned.
    """
    from playwright.sync_api import sync_playwright

    executable = executable or find_chromium()
    if executable is None:
        raise FileNotFoundError("no chromium executable (run scripts/setup_browser.sh)")
    url = Path(html).resolve().as_uri()
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))

            def route(r: Any) -> None:
                if r.request.url == url:
                    r.continue_()
                else:
                    requests.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(url, wait_until="load")
            page.wait_for_function(
                "() => { const d = document.querySelectorAll('.plotly-graph-div');"
                " return d.length > 0 && [...d].every(x => x.querySelector('.main-svg')); }",
                timeout=30_000,
            )
            page.wait_for_timeout(500)  # let the responsive relayout settle before measuring
            plots = page.evaluate(_PLOTS_JS)
            landed = None
            if follow_first_link:
                link = page.query_selector('#hardest a[href^="#lineage-"]')
                if link is not None:
                    target = link.get_attribute("href")
                    link.click()
                    page.wait_for_function(f"() => location.hash === {target!r}", timeout=5_000)
                    visible = page.evaluate(
                        f"() => {{ const r = document.getElementById({target[1:]!r}).getBoundingClientRect();"
                        " return r.top >= -1 && r.top < window.innerHeight; }")
                    landed = {"href": target, "hash": page.evaluate("() => location.hash"), "visible": visible}
                    page.evaluate("() => { history.replaceState(null, '', location.pathname); window.scrollTo(0, 0); }")
            if png is not None:
                page.mouse.move(0, 0)  # no hover labels or Plotly mode bars in the picture
                page.wait_for_timeout(300)
                Path(png).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(png), full_page=full_page or clip is not None, clip=clip)
            title = page.title()
        finally:
            browser.close()
    return {"title": title, "plots": plots, "errors": errors, "requests": requests, "link": landed}


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    res = inspect_report(Path(argv[0]), Path(argv[1]), full_page="--full" in argv)
    for p in res["plots"]:
        print(f"{p['id']}: {p['traces']} traces, {p['marks']} marks drawn")
    for e in res["errors"] + [f"blocked request: {u}" for u in res["requests"]]:
        print(e, file=sys.stderr)
    return 1 if res["errors"] or res["requests"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
