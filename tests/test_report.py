"""The report phase (``lo2-report``): one self-contained report.html from the artifacts of a
loader + detection + explainability run on the shared generated sample."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

from loglead_lo2.detection.cli import main as detect_main
from loglead_lo2.explain.cli import main as explain_main
from loglead_lo2.report.cli import main

MODELS = "event_lr_words,sequence_shap_lr_words"
SECTIONS = ("data", "settings", "leaderboard", "curves", "signatures", "shap", "windows")


@pytest.fixture(scope="module")
def root(lo2_result: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the loader output with a detection and an explainability run."""
    out = tmp_path_factory.mktemp("report_root") / "root"
    shutil.copytree(lo2_result, out)
    assert detect_main(["--root", str(out), "--models", MODELS]) == 0
    assert explain_main(["--root", str(out), "--nn-top-k", "5", "--shap-sample", "30",
                         "--shap-background", "16", "--sup-models", MODELS]) == 0
    return out


@pytest.fixture(scope="module")
def html(root: Path) -> str:
    assert main(["--root", str(root), "--quiet"]) == 0
    return (root / "report" / "report.html").read_text("utf-8")


def _copy(root: Path, tmp_path: Path, *skip: str) -> Path:
    out = tmp_path / "root"
    shutil.copytree(root, out, ignore=shutil.ignore_patterns("report", *skip))
    return out


def test_explain_saves_per_row_shap_values(root: Path) -> None:
    values = pl.read_parquet(root / "explainability" / "shap_event_lr_words_values.parquet")
    assert values.columns == ["seq_id", "feature", "shap", "value"]
    assert values.height > 0 and values["feature"].n_unique() <= 20
    manifest = json.loads((root / "explainability" / "explain_manifest.json").read_text())
    assert "shap_event_lr_words_values.parquet" in manifest["files"]


def test_every_section_is_present(root: Path, html: str) -> None:
    for name in SECTIONS:
        assert f'<section id="{name}">' in html
    assert "Ranking rule: within each service block: hold-out ROC-AUC" in html
    assert "Length check passed" in html or "Length leakage" in html
    assert 'split == "holdout"' in html
    assert "event_lr_words" in html and "sequence_shap_lr_words" in html
    assert "ROC and PR curves" in html and "alt=\"ROC and PR curves\"" in html
    assert "signature recall heat map" in html
    assert "SHAP summary of event_lr_words" in html  # beeswarm from the per-row values
    assert "mean |SHAP| of event_lr_words" in html
    assert "nearest normal window" in html and "cosine" in html
    nn = pl.read_csv(root / "explainability" / "nn_mapping.csv").filter(pl.col("flagged"))
    labelled = f"{int(nn.head(10)['anomaly'].sum())} of {min(nn.height, 10)} labelled anomalous"
    assert "highest isolation_forest score" in html and labelled in html
    assert "Missing input" not in html
    manifest = json.loads((root / "report" / "report_manifest.json").read_text())
    assert manifest["phase"] == "report" and list(manifest["files"]) == ["report.html"]


def test_page_is_self_contained(html: str) -> None:
    assert "<script" not in html and "<link" not in html
    urls = re.findall(r'(?:src|href)="([^"#][^"]*)"', html)
    assert urls and all(u.startswith("data:image/svg+xml;base64,") for u in urls)
    assert not re.search(r"https?://(?!www\.w3\.org)", html.split("<body>")[1]
                         .replace("data:image", ""))


def test_same_inputs_give_identical_bytes(root: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["--root", str(root), "--out-dir", str(a), "--quiet"]) == 0
    assert main(["--root", str(root), "--out-dir", str(b), "--quiet"]) == 0
    assert (a / "report.html").read_bytes() == (b / "report.html").read_bytes()


def test_data_is_escaped(root: Path, tmp_path: Path) -> None:
    copy = _copy(root, tmp_path)
    info_path = copy / "lo2_load_info.json"
    info = json.loads(info_path.read_text())
    info["input_problems"]["skipped"]["items"] = ["<script>alert('x')</script>"]
    info["input_problems"]["skipped"]["count"] = 1
    info_path.write_text(json.dumps(info))
    assert main(["--root", str(copy), "--quiet"]) == 0
    page = (copy / "report" / "report.html").read_text("utf-8")
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page


def test_missing_explainability_is_a_section(root: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(root, tmp_path, "explainability", "signature_recall.*")
    (copy / "metrics" / "signature_recall.csv").unlink(missing_ok=True)
    assert main(["--root", str(copy)]) == 0
    page = (copy / "report" / "report.html").read_text("utf-8")
    for name in SECTIONS:
        assert f'<section id="{name}">' in page
    assert page.count("Missing input") >= 3
    assert f"lo2-explain --root {copy}" in page
    assert "--manifest" in page  # what gives the signature table
    assert "[Report] missing:" in capsys.readouterr().out


def test_missing_detection_run_is_one_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lo2-detect --root" in err[0]
    assert not (tmp_path / "nothing").exists()


def test_existing_report_needs_overwrite(root: Path, html: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(root), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]
    assert main(["--root", str(root), "--quiet", "--overwrite"]) == 0


def test_bad_flag_exit_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--no-such-flag"])
    assert exc.value.code == 2


def test_opens_in_headless_chromium(root: Path, html: str, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium)")
    from PIL import Image

    shot = tmp_path / "shot.png"
    page = (root / "report" / "report.html").resolve().as_uri()
    proc = subprocess.run(
        [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         f"--screenshot={shot}", "--window-size=1200,2000", page],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln.upper()
               and ("error" in ln.lower() or "uncaught" in ln.lower())]
    assert not console, console
    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20


def test_skip_if_run_names_the_missing_forest(root: Path, tmp_path: Path) -> None:
    from loglead_lo2.report.inputs import read_inputs
    from loglead_lo2.report.sections import curves_section

    copy = _copy(root, tmp_path)
    run_path = copy / "metrics" / "detect_run.json"
    run = json.loads(run_path.read_text())
    run["options"]["skip_if"] = True
    run_path.write_text(json.dumps(run))
    section = curves_section(read_inputs(copy))
    assert any("--skip-if" in what for what, _ in section["missing"])
    assert section["curves"] is not None
