"""Open a report in headless Chromium and check that it renders: the page loads, every image decodes
(``naturalWidth > 0``), tables are present.

``python -m blojax.runner.browser reproduce/report.html [--screenshot shot.png]`` prints the findings
and exits 1 if an image is broken or no table is present. Needs a Chromium binary (Debian's
``chromium`` package: ``apt-get install chromium``).
"""

from __future__ import annotations

import html as _html
import json
import pathlib
import re
import shutil
import subprocess
import tempfile

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.alt; });
  var r = {loaded: true, title: document.title, images: imgs.length, broken: broken,
           tables: document.querySelectorAll('table').length, rows: document.querySelectorAll('tr').length,
           sections: document.querySelectorAll('h2').length};
  var pre = document.createElement('pre'); pre.id = 'blojax-check'; pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script>"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def check_report(path, *, chromium: str | None = None, timeout: float = 120, screenshot=None) -> dict:
    """Load ``path`` in headless Chromium; returns ``{"loaded", "images", "broken", "tables", ...}``."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium)")
    path = pathlib.Path(path).resolve()
    page = path.read_text()
    probe = page.replace("</body>", _PROBE + "</body>") if "</body>" in page else page + _PROBE
    with tempfile.TemporaryDirectory() as tmp:
        probed = pathlib.Path(tmp) / path.name
        probed.write_text(probe)
        profile = pathlib.Path(tmp) / "profile"
        cmd = [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            probed.as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        m = re.search(r'<pre id="blojax-check">(.*?)</pre>', proc.stdout, re.S)
        if m is None:
            return {"loaded": False, "returncode": proc.returncode, "stderr": proc.stderr[-2000:]}
        result = json.loads(_html.unescape(m.group(1)))
        if screenshot is not None:
            shot = pathlib.Path(screenshot).resolve()
            subprocess.run(
                [
                    chromium,
                    *FLAGS,
                    f"--user-data-dir={profile}2",
                    "--window-size=1200,3000",
                    f"--screenshot={shot}",
                    path.as_uri(),
                ],
                capture_output=True,
                timeout=timeout,
            )
            result["screenshot"] = str(shot) if shot.exists() else None
        return result


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m blojax.runner.browser", description=(__doc__ or "\n").splitlines()[0]
    )
    p.add_argument("report")
    p.add_argument("--screenshot", default=None)
    p.add_argument("--min-images", type=int, default=1)
    args = p.parse_args(argv)
    r = check_report(args.report, screenshot=args.screenshot)
    print(json.dumps(r))
    ok = (
        r.get("loaded")
        and not r.get("broken")
        and r.get("tables", 0) > 0
        and r.get("images", 0) >= args.min_images
    )
    print("report check: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
