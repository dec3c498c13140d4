"""``report.html`` (one self-contained page: figures embedded as data URIs, our numbers beside the
paper's, configs, environment, run times) and ``report.md`` of a folder of runs.

The folder may be a ``blojax reproduce`` output (one run folder per experiment, plus ``demo/``), a
single run folder, or a sweep folder.
"""

from __future__ import annotations

import base64
import html
import math
import pathlib

from . import files

from . import claims as claims_mod
from .rundir import now, read_json

# What PAPER.md §5 says each experiment shows, so a reader sees the paper's claim beside our numbers.
# An experiment module can give its own text as a module attribute ``PAPER`` (a string), and exact
# numbers through ``paper_comparison(results) -> [{"quantity", "ours", "paper"}, ...]``.
TABLE3 = (
    "Table 3 (accuracy %, original data): "
    "distill MNIST 1 / 10 images: cold 30.7 / 89.1, warm 90.8 / 97.5, warm+retrain 12.9 / 17.1; "
    "distill CIFAR-10 1 / 10: cold 17.6 / 46.9, warm 50.3 / 59.8, warm+retrain 10.2 / 8.9; "
    "augment-net MNIST: cold 84.86, warm 92.81, warm+retrain 9.15; "
    "augment-net CIFAR-10: cold 45.38, warm 59.30, warm+retrain 11.12."
)
PAPER_NOTES = {
    "solution_concepts": (
        "E1, Fig. 2",
        "2-D binary classification with a sinusoidal boundary distilled into 2 synthetic points: "
        "optimistic, pessimistic, cold-start (min-norm boundary) and warm-start (points move; the model fits the data) solutions differ.",
    ),
    "rings": (
        "E2, Figs. 6-7",
        "Concentric rings distilled into 2 points with warm-start (1-step unroll, Adam): the warm model separates "
        "the rings (outer loss ~0.1 over ~8000 steps) while retraining a fresh model on the final points gives outer loss ~1.",
    ),
    "canvas_distill": (
        "E3, Fig. 9",
        "MNIST distilled into one 28x28 canvas + a learned soft label: warm-start accuracy high, warm-start + "
        "retrain low; cold-start's soft label settles, warm-start's keeps moving between classes.",
    ),
    "distill_table": ("E4, Table 3 (distillation columns)", TABLE3),
    "augment_net": ("E4, Table 3 (augment-net columns)", TABLE3),
    "table3": ("E4, Table 3", TABLE3),
    "antidistill": (
        "E5, Figs. 10-11",
        "One original point (0, 2); synthetic y-values as outer parameters, Fourier features, cold-start "
        "from w0 = 0. Every method fits the point; exact reaches the min-norm u; truncated Neumann/unroll/CG/damped reach "
        "smoother, larger-norm u and smaller-norm w, approaching exact as K grows or eps shrinks.",
    ),
    "hypergrad_field": (
        "E6, Fig. 11c",
        "Linear model y = w x + b, original point (1, 1), synthetic x = 0, 2 with y from (0, 0): outer "
        "solutions form the line u1 + u2 = 2; the exact hypergradient ends at (1, 1), Neumann K = 1, 100, 200 at other points of it.",
    ),
    "projection_sketch": (
        "E7, Fig. 8",
        "Cold-start vs full and partial warm-start as projections onto a cyclic sequence of 4 lines: "
        "cold-start re-projects from w0, warm-start is alternating projection (Kaczmarz), reaching a limit cycle when the sets do not intersect.",
    ),
    "spectral": (
        "E8, Fig. 5",
        "Eigenvalue maps lambda -> h(lambda): inverse 1/lambda, damped 1/(lambda + eps), K-term Neumann "
        "(1 - (1 - alpha lambda)^K) / lambda; truncated ones invert high-curvature directions and ignore low-curvature ones.",
    ),
}

_MIME = {
    ".png": "image/png",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
}


# ------------------------------------------------------------------------------------ collecting
def has_runs(folder: pathlib.Path) -> bool:
    """Whether ``folder`` (or a sub-folder) holds a run, a sweep or a reproduction marker."""
    folder = pathlib.Path(folder)
    names = ("run.json", "sweep.json", "reproduce.json")
    return any((folder / n).exists() for n in names) or any(
        (sub / n).exists() for sub in folder.iterdir() if sub.is_dir() for n in names
    )


def _entry(folder: pathlib.Path) -> dict | None:
    if not (folder / "run.json").exists():
        return None
    run = read_json(folder / "run.json")
    if not isinstance(run, dict):  # shown, not dropped: a reader must see that something is wrong
        run = {
            "kind": "run",
            "experiment": folder.name,
            "status": "corrupt run.json",
            "error": f"{folder / 'run.json'} is not valid JSON",
        }
    if run.get("kind") != "run":
        return None
    res_path = folder / "results.json"
    res = read_json(res_path)
    if res_path.exists() and not (isinstance(res, dict) and isinstance(res.get("results"), (dict, list))):
        run = dict(
            run,
            status=f"{run.get('status', '?')}, but results.json is corrupt",
            error=f"{res_path} is not a valid results file (truncated or edited?); rerun the experiment",
        )
        res = {}
    elif not res_path.exists() and str(run.get("status", "")).startswith("done"):
        run = dict(
            run, status=f"{run.get('status')}, but results.json is missing", error=f"{res_path} is missing"
        )
    res = res if isinstance(res, dict) else {}
    figures = [folder / f for f in res.get("figures", [])] if res else []
    if not figures:
        figures = sorted(p for p in folder.iterdir() if p.suffix.lower() in _MIME)
    name = run.get("experiment", folder.name)
    paper = _paper_text(run.get("module"), name)
    title = name if folder.name == name else f"{name} ({folder.name})"
    return {
        "name": name,
        "title": title,
        "id": folder.name,
        "folder": folder,
        "run": run,
        "results": res,
        "figures": [f for f in figures if f.exists()],
        "paper": paper,
    }


def _paper_text(module_path, name):
    ref, text = PAPER_NOTES.get(name, ("", ""))
    if module_path:
        try:
            import importlib

            mod = importlib.import_module(module_path)
            own = getattr(mod, "PAPER", None)
            text = own if isinstance(own, str) and own else text
            own_ref = getattr(mod, "PAPER_REF", None)
            ref = own_ref if isinstance(own_ref, str) and own_ref else ref
            desc = getattr(mod, "DESCRIPTION", "")
        except Exception:  # noqa: BLE001 - a report never fails on a module that does not import
            desc = ""
    else:
        desc = ""
    return {"ref": ref, "text": text, "description": desc}


def collect(folder: pathlib.Path) -> dict:
    folder = pathlib.Path(folder)
    entries = []
    single = _entry(folder)
    if single is not None:
        entries.append(single)
    else:
        order = (read_json(folder / "reproduce.json") or {}).get("experiments") or []
        subs = sorted(
            (p for p in folder.iterdir() if p.is_dir()),
            key=lambda p: (order.index(p.name) if p.name in order else len(order), p.name),
        )
        for sub in subs:
            e = _entry(sub)
            if e is not None:
                entries.append(e)
    demo = folder / "demo" / "output.txt"
    return {
        "folder": folder,
        "claims": _ledger(folder),
        "entries": entries,
        "reproduce": read_json(folder / "reproduce.json"),
        "sweep": read_json(folder / "sweep.json"),
        "sweep_table": read_json(folder / "results.json") if (folder / "sweep.json").exists() else None,
        "demo": demo.read_text() if demo.exists() else None,
        "demo_meta": read_json(folder / "demo" / "demo.json"),
        "environment": next(
            (
                read_json(e["folder"] / "environment.json")
                for e in entries
                if (e["folder"] / "environment.json").exists()
            ),
            None,
        )
        or files.environment(),
    }


def _ledger(folder: pathlib.Path) -> list[dict]:
    try:
        return claims_mod.evaluate(folder)
    except Exception as err:  # noqa: BLE001 - a broken claim must not cost the report
        return [
            {
                "id": "ledger",
                "experiment": "-",
                "statement": "the claims ledger could not be evaluated",
                "paper": "-",
                "margin": "-",
                "ours": None,
                "shown": "-",
                "status": "not run",
                "run": None,
                "mode": None,
                "explanation": f"{type(err).__name__}: {err}",
                "full_run": None,
            }
        ]


# ------------------------------------------------------------------------------------ ledger
LEDGER_INTRO = (
    "Each row is one checkable finding of the paper, evaluated on this folder's runs with the margin "
    "shown. <b>full run only</b>: the quick settings are too short for the effect; the stored full-run "
    "numbers (commit and command below the table) are shown beside the quick ones. <b>not run</b>: no "
    "finished run measures it here. Written to <code>claims.json</code>."
)


def _full_cell(e: dict) -> str:
    fr = e.get("full_run")
    return f"{fr['shown']} ({fr['status']})" if fr else "-"


def _ledger_rows(entries: list[dict]) -> list[list[str]]:
    rows = []
    for e in entries:
        ours = e["shown"] if e["status"] != "full run only" else f"quick run: {e['shown']}"
        stored_fails = e["status"] == "full run only" and (e.get("full_run") or {}).get("status") == "fails"
        note = e.get("explanation", "") if e["status"] in ("fails", "not run") or stored_fails else ""
        rows.append([e["id"], e["statement"], e["paper"], ours, _full_cell(e), e["status"], note])
    return rows


_LEDGER_HEADER = [
    "claim",
    "statement (margin)",
    "paper",
    "ours (this run)",
    "full run (stored)",
    "status",
    "why",
]


def _ledger_sources(entries: list[dict]) -> list[tuple[str, str, str]]:
    """``(experiment, commit, command)`` of the stored full runs the ledger shows."""
    seen = {}
    for e in entries:
        fr = e.get("full_run")
        if fr and e["experiment"] not in seen:
            seen[e["experiment"]] = (e["experiment"], fr.get("commit", "?"), fr.get("command", "?"))
    return list(seen.values())


def _ledger_counts(entries: list[dict]) -> str:
    return ", ".join(f"{sum(e['status'] == s for e in entries)} {s}" for s in claims_mod.STATUSES)


def render_ledger_html(entries: list[dict]) -> str:
    if not entries:
        return ""
    cls = {"holds": "ok", "fails": "bad"}
    head = "".join(f"<th>{_h(c)}</th>" for c in _LEDGER_HEADER)
    body = []
    for row, e in zip(_ledger_rows(entries), entries):
        cells = [f"<td>{_h(c)}</td>" for c in row]
        cells[5] = f"<td class='{cls.get(e['status'], '')}'>{_h(e['status'])}</td>"
        cells[1] = f"<td>{_h(e['statement'])}<br><small>margin: {_h(e['margin'])}</small></td>"
        body.append("<tr>" + "".join(cells) + "</tr>")
    src = _ledger_sources(entries)
    src_html = (
        (
            "<p>Stored full runs: "
            + "; ".join(
                f"<code>{_h(n)}</code> at commit {_h(c)}: <code>{_h(cmd)}</code>" for n, c, cmd in src
            )
            + "</p>"
        )
        if src
        else ""
    )
    return (
        f"<h2 id='claims'>Claims ledger</h2><p>{LEDGER_INTRO}</p><p><b>{_h(_ledger_counts(entries))}</b>.</p>"
        f"<table class='ledger'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{src_html}"
    )


def _own_claims(e: dict, entries: list[dict]) -> list[dict]:
    return [c for c in entries if c.get("run") and pathlib.Path(c["run"]) == pathlib.Path(e["folder"])]


def entry_claims_html(e: dict, entries: list[dict]) -> str:
    """This experiment's claims; in a quick run the stored full-run numbers beside the quick ones."""
    own = _own_claims(e, entries)
    if not own:
        return ""
    quick = any(c["mode"] == "quick" for c in own)
    rows = [[c["id"], c["margin"], c["shown"], _full_cell(c), c["status"]] for c in own]
    label = "this run (quick settings)" if quick else "this run"
    note = (
        (
            "<p><b>Quick settings.</b> Claims marked <i>full run only</i> need the full settings: judge them by the "
            "stored full-run numbers, not by this section's quick numbers.</p>"
        )
        if any(c["status"] == "full run only" for c in own)
        else ""
    )
    src = _ledger_sources(own)
    src_html = "".join(
        f"<p><small>Stored full run: commit {_h(c)}, <code>{_h(cmd)}</code></small></p>" for _, c, cmd in src
    )
    return (
        "<h3>Claims of this experiment</h3>"
        + note
        + _table(["claim", "margin", label, "full run (stored)", "status"], rows, "claims")
        + src_html
    )


def entry_claims_md(e: dict, entries: list[dict]) -> list[str]:
    own = _own_claims(e, entries)
    if not own:
        return []
    quick = any(c["mode"] == "quick" for c in own)
    out = ["Claims of this experiment:", ""]
    if any(c["status"] == "full run only" for c in own):
        out += [
            "**Quick settings.** Claims marked *full run only* need the full settings: judge them by the stored "
            "full-run numbers, not by this section's quick numbers.",
            "",
        ]
    out += [
        _md_table(
            [
                "claim",
                "margin",
                "this run (quick settings)" if quick else "this run",
                "full run (stored)",
                "status",
            ],
            [[c["id"], c["margin"], c["shown"], _full_cell(c), c["status"]] for c in own],
        ),
        "",
    ]
    out += [f"Stored full run: commit {c}, `{cmd}`" for _, c, cmd in _ledger_sources(own)]
    return out + ([""] if _ledger_sources(own) else [])


def render_ledger_md(entries: list[dict]) -> list[str]:
    if not entries:
        return []
    intro = (
        LEDGER_INTRO.replace("<b>", "**").replace("</b>", "**").replace("<code>", "`").replace("</code>", "`")
    )
    rows = [[r[0], f"{r[1]} (margin: {e['margin']})", *r[2:]] for r, e in zip(_ledger_rows(entries), entries)]
    out = [
        "## Claims ledger",
        "",
        intro,
        "",
        f"**{_ledger_counts(entries)}**.",
        "",
        _md_table(_LEDGER_HEADER, rows),
        "",
    ]
    src = _ledger_sources(entries)
    if src:
        out += ["Stored full runs: " + "; ".join(f"`{n}` at commit {c}: `{cmd}`" for n, c, cmd in src), ""]
    return out


# ------------------------------------------------------------------------------------ numbers
def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v == 0 or not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def _summarize(v):
    """A list of numbers shown whole when short, else as shape and range."""
    flat = []

    def walk(x, depth=0):
        if isinstance(x, list):
            for y in x:
                walk(y, depth + 1)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            flat.append(float(x))

    if isinstance(v, list):
        walk(v)
        shape = []
        x = v
        while isinstance(x, list):
            shape.append(len(x))
            x = x[0] if x else None
        if (
            len(flat) <= 8
            and len(shape) == 1
            and all(isinstance(y, (int, float, str, bool)) or y is None for y in v)
        ):
            return "[" + ", ".join(_fmt(y) for y in v) + "]"
        if flat:
            fin = [y for y in flat if math.isfinite(y)]
            rng = f", range {_fmt(min(fin))} .. {_fmt(max(fin))}" if fin else ""
            return f"array {'x'.join(map(str, shape))}{rng}"
        return f"list of {len(v)}"
    return _fmt(v)


def scalar_rows(d, prefix="", limit=80) -> list[tuple[str, str]]:
    rows = []

    def walk(x, pre):
        if len(rows) >= limit:
            return
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{pre}{k}.")
        else:
            rows.append((pre[:-1], _summarize(x)))

    walk(d, prefix)
    return rows


def _leaves(d, prefix=""):
    """``{dotted path: value}``; a ``{"mean", "std"}`` dict is one leaf."""
    out = {}
    if isinstance(d, dict) and not (set(d) >= {"mean", "std"}):
        for k, v in d.items():
            out.update(_leaves(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out


def _show(v):
    if isinstance(v, dict) and set(v) >= {"mean", "std"}:
        return f"{_fmt(v['mean'])} ± {_fmt(v['std'])}"
    return v if v is not None else "-"


def auto_comparison(results) -> list[dict] | None:
    """Rows "ours beside the paper" for results shaped ``{"ours": {...}, "paper": {...}}`` (same
    nesting on both sides): one row per path found on either side."""
    if not (
        isinstance(results, dict)
        and isinstance(results.get("ours"), dict)
        and isinstance(results.get("paper"), dict)
    ):
        return None
    ours, paper = _leaves(results["ours"]), _leaves(results["paper"])
    keys = list(ours) + [k for k in paper if k not in ours]
    return [
        {"quantity": k, "ours": _show(ours.get(k)) if k in ours else "not run", "paper": _show(paper.get(k))}
        for k in keys[:120]
    ]


# ------------------------------------------------------------------------------------ html
def _secs(x) -> str:
    return f"{float(x or 0.0):.1f} s"


def _h(x) -> str:
    return html.escape(str(x))


def _table(header, rows, cls="") -> str:
    head = "".join(f"<th>{_h(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_TEXT = {".md", ".txt", ".csv", ".json"}


def _figure(path: pathlib.Path) -> str:
    """An image embedded as a data URI; a text file (a table written by plot()) inline; else its name."""
    suffix = path.suffix.lower()
    if suffix in _MIME:
        return _img(path)
    if suffix in _TEXT:
        text = path.read_text(errors="replace")
        return f"<h4>{_h(path.name)}</h4><pre>{_h(text[:20000])}</pre>"
    return f"<p>File: <code>{_h(path.name)}</code></p>"


def _img(path: pathlib.Path) -> str:
    mime = _MIME[path.suffix.lower()]
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:{mime};base64,{data}" alt="{_h(path.name)}">'
        f"<figcaption>{_h(path.name)}</figcaption></figure>"
    )


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em} th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2} td{font-variant-numeric:tabular-nums}
figure{display:inline-block;margin:.5em;text-align:center;max-width:100%} img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555} .paper{background:#f7f7ff;border-left:4px solid #88a;padding:.5em 1em}
.ok{color:#070} .bad{color:#a00;font-weight:bold} pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
details{margin:.5em 0} summary{cursor:pointer;color:#336}
"""


def _status(run: dict) -> str:
    return run.get("status", "?")


def render_html(info: dict) -> str:
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>blojax report</title><style>{CSS}</style></head><body>"
    ]
    parts.append("<h1>blojax: reproduction report</h1>")
    parts.append(
        "<p>Vicol et al., <i>On Implicit Bias in Overparameterized Bilevel Optimization</i> (ICML 2022), "
        f"regenerated by <code>blojax</code>. Generated {_h(now())} from <code>{_h(info['folder'])}</code>.</p>"
    )
    rep = info.get("reproduce")
    if rep:
        cpu = (
            (
                f", CPU time {_fmt(rep['cpu_seconds'])} s on {rep.get('cpu_count', '?')} core(s), load average "
                f"{_fmt(rep.get('load_average') or 0.0)} at the end"
            )
            if rep.get("cpu_seconds") is not None
            else ""
        )
        parts.append(
            f"<p>Mode: <b>{_h(rep.get('mode', '?'))}</b>. Total wall time: <b>{_fmt(rep.get('total_seconds') or 0.0)} s</b>"
            f"{_h(cpu)} (started {_h(rep.get('started', '?'))}).</p>"
        )
        if rep.get("unusable"):
            parts.append(
                "<p class='bad'>Modules that could not be run: "
                + _h("; ".join(f"{k}: {v}" for k, v in rep["unusable"].items()))
                + "</p>"
            )
    parts.append(render_ledger_html(info.get("claims") or []))
    entries = info["entries"]
    if entries:
        rows = []
        walls = (rep or {}).get("runs") or {}
        for e in entries:
            r = e["run"]
            w = walls.get(e["id"], {})
            wall = (
                _secs(w["wall_seconds"])
                + (f" (CPU {_secs(w['cpu_seconds'])})" if w.get("cpu_seconds") is not None else "")
                if w.get("wall_seconds")
                else "-"
            )
            rows.append(
                [
                    e["title"],
                    e["paper"]["ref"] or "-",
                    _status(r),
                    _secs(r.get("seconds")),
                    wall,
                    str(len(e["figures"])),
                ]
            )
        if info.get("demo_meta"):
            m = info["demo_meta"]
            rows.append(
                [
                    "demo (python -m blojax.demo)",
                    "§4 results",
                    m.get("status", "?"),
                    _secs(m.get("seconds")),
                    _secs(m.get("seconds")),
                    "0",
                ]
            )
        parts.append(
            "<h2 id='summary'>Summary</h2><p>Run time: the experiment's own computation; wall: its whole process "
            "(start-up, imports, compilation, figures).</p>"
            + _table(["experiment", "paper", "status", "run time", "wall", "figures"], rows, "summary")
        )
    for e in entries:
        parts.append(_render_entry(e, info.get("claims") or []))
    if info.get("sweep_table"):
        rows = info["sweep_table"].get("rows", [])
        cols: list[str] = []
        for r in rows:
            cols.extend(c for c in r if c not in cols)
        cols = [c for c in cols if not isinstance(rows[0].get(c), list)][:30] if rows else cols
        parts.append(
            "<h2>Sweep</h2>" + _table(cols, [[_summarize(r.get(c)) for c in cols] for r in rows], "sweep")
        )
    if info.get("demo") is not None:
        parts.append(
            "<h2 id='demo'>Core demo: <code>python -m blojax.demo</code></h2>"
            "<div class='paper'>PAPER.md §4: cold-start BLO with exact hypergradients reaches the outer solution "
            "nearest its initialization; the other strategies reach other outer solutions; cold- and warm-start "
            "reach different solutions in distillation.</div>"
            f"<pre>{_h(info['demo'])}</pre>"
        )
    env = info.get("environment") or {}
    env_rows = [[k, v] for k, v in (env.get("versions") or {}).items()]
    env_rows += [[k, env[k]] for k in ("platform", "machine", "cpu_count", "jax_backend") if k in env]
    parts.append("<h2 id='environment'>Environment</h2>" + _table(["item", "value"], env_rows, "env"))
    parts.append("</body></html>")
    return "\n".join(parts)


def _render_entry(e: dict, ledger: list[dict] | tuple = ()) -> str:
    r, res = e["run"], e["results"]
    out = [f"<h2 id='{_h(e['id'])}'>{_h(e['title'])}</h2>"]
    desc = res.get("description") or e["paper"]["description"]
    if desc:
        out.append(f"<p>{_h(desc)}</p>")
    status = _status(r)
    cls = "ok" if status == "done" else "bad"
    out.append(
        f"<p>Status: <span class='{cls}'>{_h(status)}</span>; run time {_secs(r.get('seconds'))}"
        + (f" (+{_secs(r.get('plot_seconds'))} figures)" if r.get("plot_seconds") else "")
        + "</p>"
    )
    if r.get("error"):
        out.append(f"<p class='bad'>{_h(r['error'])}</p>")
    if e["paper"]["text"]:
        out.append(
            f"<div class='paper'><b>Paper ({_h(e['paper']['ref'])}):</b> {_h(e['paper']['text'])}</div>"
        )
    out.append(entry_claims_html(e, list(ledger)))
    comp = res.get("paper_comparison") or auto_comparison(res.get("results"))
    if comp:
        out.append(
            "<h3>Ours beside the paper</h3>"
            + _table(
                ["quantity", "ours", "paper"],
                [
                    [c.get("quantity", ""), _summarize(c.get("ours")), _summarize(c.get("paper"))]
                    for c in comp
                ],
                "comparison",
            )
        )
    for f in e["figures"]:
        out.append(_figure(f))
    if res.get("results"):
        out.append(
            "<h3>Reported numbers</h3>"
            + _table(["quantity", "value"], scalar_rows(res["results"]), "numbers")
        )
    cfg = r.get("config") or res.get("config") or {}
    out.append(
        "<details><summary>Config</summary>"
        + _table(["field", "value"], scalar_rows(cfg), "config")
        + "</details>"
    )
    return "\n".join(out)


# ------------------------------------------------------------------------------------ markdown
def _md_table(header, rows) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_md(info: dict) -> str:
    folder = info["folder"]
    out = [
        "# blojax: reproduction report",
        "",
        f"Vicol et al., *On Implicit Bias in Overparameterized Bilevel Optimization* (ICML 2022), regenerated by blojax. Generated {now()}.",
        "",
    ]
    rep = info.get("reproduce")
    if rep:
        cpu = (
            f", CPU time {_fmt(rep['cpu_seconds'])} s on {rep.get('cpu_count', '?')} core(s)"
            if rep.get("cpu_seconds") is not None
            else ""
        )
        out += [
            f"Mode: **{rep.get('mode', '?')}**. Total wall time: **{_fmt(rep.get('total_seconds') or 0.0)} s**{cpu}.",
            "",
        ]
    out += render_ledger_md(info.get("claims") or [])
    if info["entries"]:
        walls = (rep or {}).get("runs") or {}

        def wall(e):
            w = walls.get(e["id"], {})
            if not w.get("wall_seconds"):
                return "-"
            return _secs(w["wall_seconds"]) + (
                f" (CPU {_secs(w['cpu_seconds'])})" if w.get("cpu_seconds") is not None else ""
            )

        rows = [
            [
                e["title"],
                e["paper"]["ref"] or "-",
                _status(e["run"]),
                _secs(e["run"].get("seconds")),
                wall(e),
                len(e["figures"]),
            ]
            for e in info["entries"]
        ]
        out += [
            "## Summary",
            "",
            "Run time: the experiment's own computation; wall: its whole process (start-up, imports, "
            "compilation, figures).",
            "",
            _md_table(["experiment", "paper", "status", "run time", "wall", "figures"], rows),
            "",
        ]
    for e in info["entries"]:
        r, res = e["run"], e["results"]
        out += [f"## {e['title']}", ""]
        if res.get("description") or e["paper"]["description"]:
            out += [res.get("description") or e["paper"]["description"], ""]
        out += [f"Status: {_status(r)}; run time {_secs(r.get('seconds'))}.", ""]
        if r.get("error"):
            out += [f"**Error:** {r['error']}", ""]
        if e["paper"]["text"]:
            out += [f"> **Paper ({e['paper']['ref']}):** {e['paper']['text']}", ""]
        out += entry_claims_md(e, info.get("claims") or [])
        comp = res.get("paper_comparison") or auto_comparison(res.get("results"))
        if comp:
            out += [
                _md_table(
                    ["quantity", "ours", "paper"],
                    [
                        [c.get("quantity", ""), _summarize(c.get("ours")), _summarize(c.get("paper"))]
                        for c in comp
                    ],
                ),
                "",
            ]
        for f in e["figures"]:
            try:
                rel = f.relative_to(folder)
            except ValueError:
                rel = f
            if f.suffix.lower() in _MIME:
                out += [f"![{f.name}]({rel.as_posix()})", ""]
            elif f.suffix.lower() == ".md":
                out += [f"{f.name}:", "", f.read_text(errors="replace").rstrip(), ""]
            else:
                out += [f"[{f.name}]({rel.as_posix()})", ""]
        if res.get("results"):
            out += [_md_table(["quantity", "value"], scalar_rows(res["results"])), ""]
    if info.get("demo") is not None:
        out += ["## Core demo: `python -m blojax.demo`", "", "```", info["demo"].rstrip(), "```", ""]
    env = info.get("environment") or {}
    out += [
        "## Environment",
        "",
        _md_table(
            ["item", "value"],
            [[k, v] for k, v in (env.get("versions") or {}).items()]
            + [[k, env[k]] for k in ("platform", "cpu_count", "jax_backend") if k in env],
        ),
        "",
    ]
    return "\n".join(out)


def write_report(folder) -> tuple[pathlib.Path, pathlib.Path]:
    info = collect(pathlib.Path(folder))
    claims_mod.write(folder, info["claims"])
    h = files.atomic_write_text(pathlib.Path(folder) / "report.html", render_html(info))
    m = files.atomic_write_text(pathlib.Path(folder) / "report.md", render_md(info))
    return h, m
