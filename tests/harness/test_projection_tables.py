"""The projection tables `rackbench report` includes."""
from harness import report
from harness.studies.projection_tables import projection_tables


def test_one_table_per_workload_and_mode_with_cloudmatrix_as_reference():
    tables = projection_tables()
    titles = [t for t, _ in tables]
    assert [t.split(",")[0] for t in titles] == [
        "llama3-405b (train)", "deepseek-v3 (train)", "deepseek-r1 (decode)", "deepseek-r1 (prefill)"]
    for title, df in tables:
        assert "calibration:" in title
        ref = df[df["basis"] == "reference"]
        assert list(ref["system"]) == ["cloudmatrix-384"]
        assert ref["throughput_vs_cloudmatrix"].iloc[0] == 1.0
        assert {"gb200-nvl72", "hgx-h100", "hgx-h800", "hgx-h20"} <= set(df["system"])


def test_report_includes_the_projection_section(tmp_path):
    html_path, md_path = report.write_report(tmp_path, "r", title="with projections")
    html = html_path.read_text()
    assert "<h2>Projections</h2>" in html and "cloudmatrix-384" in html
    assert "## Projections" in md_path.read_text()
