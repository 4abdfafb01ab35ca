"""report: self-contained HTML that parses and renders, with every result-set string escaped."""
from __future__ import annotations

import base64
import importlib.util
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import compare, history, report, resultset

DATA = Path(__file__).parent / "data"
_spec = importlib.util.spec_from_file_location("rackbench_test_synth", DATA / "synth.py")
synth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synth)

EVIL = "<script>alert(1)</script>"


class Collector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.text, self.attrs = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data):
        self.text.append(data)


def _evil_sets(tmp_path: Path):
    """A base and a new set whose case, group and machine names try to inject markup."""
    results = tmp_path / "results"
    rng = np.random.default_rng(0)

    def cases(slow):
        cs = synth.many_cases(rng, 6, n_samples=30, rel_sd=0.01, slowdown=slow)
        cs.append(synth.make_case(EVIL, "<b>grp</b>", synth.samples(rng, 1e-3 * slow, 30, 0.01),
                                  flops=2e6, bytes=1e5))
        cs.append(synth.make_case("cost $5 $x^2$", "matmul", synth.samples(rng, 2e-3, 30, 0.01), flops=4e6, bytes=4e4))
        return cs

    base = synth.save_in(results, synth.make_set(cases(1.0), created_utc="2026-11-01T02:00:00Z"))
    new = synth.save_in(results, synth.make_set(cases(1.3), created_utc="2026-11-02T02:00:00Z", commit="b" * 40))
    return results, base, new


def test_html_report_escapes_everything_and_is_self_contained(cli, capsys, tmp_path):
    results, base, new = _evil_sets(tmp_path)
    out_dir = tmp_path / "out"
    assert cli(["report", "--base", str(base), "--new", str(new), "--results", str(results), "--out", str(out_dir)]) == 0
    html_path = out_dir / f"report-{new.stem}.html"
    assert f"report: {html_path}" in capsys.readouterr().out
    page = html_path.read_text()
    parsed = Collector()
    parsed.feed(page)
    parsed.close()
    assert "script" not in parsed.tags and "b" not in parsed.tags  # no markup from a name got through
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;grp&lt;/b&gt;" in page
    assert EVIL in "".join(parsed.text)  # ...and the name is still shown, as text
    # self-contained: every image inline, nothing fetched from anywhere
    srcs = [v for k, v in parsed.attrs if k in ("src", "href")]
    assert srcs and all(v.startswith("data:image/png;base64,") for v in srcs)
    for v in srcs:
        assert base64.b64decode(v.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert parsed.tags.count("img") == 1 + 5  # the roofline and one trend plot per family (5)
    assert "Comparison" in page and "slower" in page


def test_markdown_report_escapes_and_links_written_pngs(tmp_path):
    results, base, new = _evil_sets(tmp_path)
    cmp = compare.compare_files(base, new)
    h = history.load_history(results / "box-a")
    html_path, md_path = report.write_report(tmp_path / "out", "r", comparison=cmp,
                                             new=resultset.load(new), history=h)
    md = md_path.read_text()
    assert EVIL not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert "r-png/roofline.png" in links  # in a folder of its own: the HTML stands alone beside it
    assert all((tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG" for name in links)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r-png", "r.html", "r.md"]


def test_roofline_points_are_flops_over_bytes_and_achieved_rate():
    rs = synth.make_set([synth.make_case("mm", "matmul", [2e-3, 2e-3, 2e-3], flops=4e9, bytes=2e7),
                         synth.make_case("f", "matmul", status="failed", reason="x", flops=1.0, bytes=1.0)])
    assert report.roofline_points(rs) == [("matmul", "mm", 200.0, 2e12)]
    assert report.roofline_plot(rs)[:4] == b"\x89PNG"
    assert report.roofline_plot(synth.make_set([])) is None


def test_projection_tables_hook_included_and_escaped(tmp_path, monkeypatch):
    monkeypatch.setattr(report.projections, "projection_tables", lambda: [(
        f"Llama 70B {EVIL}", pd.DataFrame({"system": [EVIL, "NVL72"], "step_time_s": [1.5, 0.25]}))])
    r = report.build_report(new=synth.make_set([]))
    assert "<h2>Projections</h2>" in r.html and '<td class="num">0.25</td>' in r.html
    assert EVIL not in r.html and EVIL not in r.markdown
    assert "| &lt;script&gt;alert(1)&lt;/script&gt; | 1.5 |" in r.markdown


def test_report_defaults_to_newest_set_and_its_baseline(cli, capsys, tmp_path):
    results, base, new = _evil_sets(tmp_path)
    before = sorted((str(p), p.read_bytes()) for p in results.rglob("*.json"))
    assert cli(["report", "--results", str(results), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / f"report-{new.stem}.html").is_file()
    assert sorted((str(p), p.read_bytes()) for p in results.rglob("*.json")) == before


def _browser():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (Debian package `chromium`; CI installs it); the html.parser tests still ran")
    return browser


def _chromium(browser, *args, timeout=120):
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_html_renders_in_headless_chromium(tmp_path):
    """Debian's chromium renders the page: the DOM it builds has no script element, shows the
    changed cases with the full table folded away, and a screenshot of it is a page of text
    and plots, not a blank or an error page."""
    from matplotlib.image import imread

    browser = _browser()
    results, base, new = _evil_sets(tmp_path)
    html_path, _ = report.write_report(tmp_path / "out", "r", comparison=compare.compare_files(base, new),
                                       new=resultset.load(new), history=history.load_history(results / "box-a"))
    proc = _chromium(browser, "--dump-dom", html_path.resolve().as_uri())
    dom = proc.stdout
    assert proc.returncode == 0 and "<table>" in dom, proc.stderr[-2000:]
    assert "<script" not in dom.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert dom.count("<img ") == 6
    assert "Changed: 7 of 8 cases, worst first" in dom and "<summary>All 8 cases</summary>" in dom
    assert "<summary>The 8 points, numbered as on the plot</summary>" in dom
    shot = tmp_path / "shot.png"
    proc = _chromium(browser, "--window-size=1200,1800", f"--screenshot={shot}", html_path.resolve().as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1800, 1200)
    dark = (pixels.mean(axis=2) < 0.5).mean()  # text, table rules, plot lines
    assert 0.005 < dark < 0.5, dark  # neither blank nor a dark error page
    colours = len(np.unique((pixels[::4, ::4] * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert colours > 50  # the verdict colours and the plots, not a single-colour page


def test_projection_cells_never_print_none_or_exponents(monkeypatch):
    monkeypatch.setattr(report.projections, "projection_tables", lambda: [(
        "t", pd.DataFrame({"system": ["a", "b"], "tokens_per_s_per_kw": [11670.25, None], "mfu": [0.5937, None],
                           "throughput_vs_cloudmatrix": [1.0, float("nan")]}))])
    r = report.build_report()
    assert "None" not in r.markdown and "e+" not in r.markdown and "nan" not in r.markdown
    assert "| system | tokens/s per kW | MFU | throughput vs cloudmatrix |" in r.markdown
    assert "| a | 11,670 | 59.4% | 1 |" in r.markdown and "| b | - | - | - |" in r.markdown


def test_trend_plots_warn_nothing_and_claim_no_change_points_they_lack(tmp_path, monkeypatch):
    """A family none of whose cases ran in one set used to leak numpy's 'All-NaN slice'
    RuntimeWarning; a title said '(dashed: change points)' with none drawn."""
    import warnings

    rng = np.random.default_rng(4)
    for day in range(1, 5):
        cases = synth.many_cases(rng, 12, n_samples=10)
        if day == 2:  # every case of the family failed this night
            cases = [synth.make_case(c.name, c.group, status="failed", reason="x") for c in cases]
        synth.save_in(tmp_path, synth.make_set(cases, created_utc=f"2026-11-0{day}T02:00:00Z", commit=str(day) * 40))
    h = history.load_history(tmp_path / "box-a")
    titles = []
    real = report._figure

    def spy(*a, **kw):
        fig, ax = real(*a, **kw)
        titles.append(ax)
        return fig, ax

    monkeypatch.setattr(report, "_figure", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots = report.trend_plots(h)
    assert plots and all(png[:4] == b"\x89PNG" for png in plots.values())
    assert not any("change points" in ax.get_title() for ax in titles)
    # the x axis is the sets' dates, each tick naming its commit
    assert [t.get_text() for t in titles[0].get_xticklabels()][0] == "11-01 02:00\n11111111"


def test_report_on_an_older_set_shows_nothing_after_it_and_one_suite(cli, capsys, tmp_path):
    rng = np.random.default_rng(5)
    paths = []
    for day, suite in ((1, "default"), (2, "quick"), (3, "default"), (4, "default")):
        rs = synth.make_set(synth.many_cases(rng, 3), created_utc=f"2026-11-0{day}T02:00:00Z", commit=str(day) * 40)
        rs.meta["suite"] = suite
        paths.append(synth.save_in(tmp_path / "results", rs))
    assert cli(["report", "--new", str(paths[2]), "--results", str(tmp_path / "results"), "--out",
                str(tmp_path / "o")]) == 0
    md = (tmp_path / "o" / f"report-{paths[2].stem}.md").read_text()
    assert "2 sets of suite default on machine box-a, 2026-11-01 to 2026-11-03" in md
    assert "left out: 1 set(s) created after 2026-11-03T02:00:00Z, the set reported on" in md
    assert "left out: 1 set(s) of another suite (quick)" in md
    assert "base: " in md and paths[0].name in md  # its baseline: the earlier set of its suite
