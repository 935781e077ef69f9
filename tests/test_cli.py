"""The command line as users meet it: ``lo2`` and its subcommands, ``python -m``, ``--help``
everywhere (shell scripts too), one-line errors, ``--quiet`` and the command lines of
``user-commands.md``."""

from __future__ import annotations

import argparse
import io
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from loglead_lo2 import cli
from loglead_lo2.progress import counter, eta_note, human_seconds, progress, set_progress

ROOT = Path(__file__).resolve().parents[1]
USER_COMMANDS = ROOT.parent / "shared" / "lo2-reference" / "user-commands.md"
PHASES = ("sample", "load", "detect", "explain", "scan", "extract")


def _run(*cmd: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_lo2_help_lists_every_subcommand() -> None:
    out = _run(sys.executable, "-m", "loglead_lo2", "--help")
    assert out.returncode == 0
    for name in cli.COMMANDS:
        assert f"\n  {name} " in out.stdout
    script = Path(sys.executable).parent / "lo2"
    if script.exists():  # the console script of an installed checkout
        assert _run(str(script), "--help").stdout == out.stdout


def test_lo2_help_imports_no_heavy_library() -> None:
    code = ("import sys, contextlib, io; from loglead_lo2.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('sklearn', 'xgboost', 'shap', 'matplotlib', 'polars')))")
    out = _run(sys.executable, "-c", code)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("name", PHASES)
def test_every_subcommand_answers_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: lo2 {name} ")
    assert "-q, --quiet" in out and "-v, --verbose" in out


@pytest.mark.parametrize("module", ["loglead_lo2", "loglead_lo2.loader", "loglead_lo2.detection",
                                    "loglead_lo2.explain", "loglead_lo2.generator",
                                    "loglead_lo2.tools.scan", "loglead_lo2.tools.extract"])
def test_python_m_answers_help(module: str) -> None:
    out = _run(sys.executable, "-m", module, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: ")


@pytest.mark.parametrize("script", ["demo/lo2_e2e/run_lo2_loader.py", "demo/lo2_e2e/LO2_samples.py",
                                    "demo/lo2_e2e/lo2_phase_f_explainability.py",
                                    "tools/lo2_result_scan.py"])
def test_python_scripts_answer_help(script: str) -> None:
    out = _run(sys.executable, script, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: ")


def test_unknown_and_missing_subcommands(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "unknown command 'frobnicate'" in err[0] and "--help" in err[0]
    monkeypatch.setitem(cli.COMMANDS, "report", ("loglead_lo2.no_such_phase.cli", "x"))
    assert cli.main(["report", "--root", "x"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["lo2: error: 'report' is not available in this version of loglead-lo2"]
    assert cli.main([]) == 2  # no command: the usage, on stderr
    assert "commands:" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["sample", "--out", "x", "--runs", "abc"],
    ["sample"],
    ["load", "--root", "x", "--runs", "abc"],
    ["load", "--root", "x", "--single-service", "nope"],
    ["detect", "--if-contamination", "2"],
    ["detect", "--no-such-flag"],
    ["explain", "--nn-top-k", "0"],
    ["scan", "--temp-min-age", "abc"],
    ["extract", "--bogus"],
])
def test_bad_value_is_one_line_with_a_help_hint(argv: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len(err) == 1, captured.err
    assert err[0].startswith(f"lo2 {argv[0]}: error: ")
    assert err[0].endswith(f"(see lo2 {argv[0]} --help)")
    assert captured.out == ""


def test_explain_lists_the_same_models_as_detect(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["detect", "--list-models"]) == 0
    detect = capsys.readouterr().out
    assert cli.main(["explain", "--list-models"]) == 0
    assert capsys.readouterr().out == detect and "event_lr_words" in detect


def test_output_folder_aliases() -> None:
    from loglead_lo2.detection.cli import build_parser as detect
    from loglead_lo2.explain.cli import build_parser as explain
    from loglead_lo2.generator.cli import build_parser as sample
    from loglead_lo2.loader.cli import build_parser as load
    from loglead_lo2.tools.extract import build_parser as extract

    assert load().parse_args(["--root", "r", "--out-dir", "o"]).output_dir == Path("o")
    assert load().parse_args(["--root", "r", "--output-dir", "o"]).output_dir == Path("o")
    assert sample().parse_args(["--out-dir", "o"]).out == Path("o")
    assert detect().parse_args(["--out-dir", "o"]).metrics_dir == Path("o")
    assert explain().parse_args(["--output-dir", "o"]).out_dir == Path("o")
    assert extract().parse_args(["--out-dir", "o"]).root == Path("o")


@pytest.mark.parametrize("script", ["tools/run_pipeline.sh", "tools/extract-split-resume-lo2.sh"])
def test_shell_scripts_answer_help_and_reject_unknown_options(script: str) -> None:
    before = sorted(p.name for p in ROOT.iterdir())
    out = _run("bash", script, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout.lower()
    assert sorted(p.name for p in ROOT.iterdir()) == before  # no folder named --help
    bad = _run("bash", script, "--bogus")
    assert bad.returncode == 2
    assert len(bad.stderr.splitlines()) == 1 and "--bogus" in bad.stderr
    assert "--help" in bad.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_silent_off_a_terminal_and_with_quiet(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert list(progress(range(3), desc="step")) == [0, 1, 2]
    assert sys.stderr.getvalue() == ""
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert list(progress(range(3), desc="step")) == [0, 1, 2]
    assert "step:" in sys.stderr.getvalue() and "/3 [" in sys.stderr.getvalue()  # rate, ETA
    monkeypatch.setattr(sys, "stderr", _Terminal())
    set_progress(False)
    try:
        assert list(progress(range(3), desc="step")) == [0, 1, 2]
    finally:
        set_progress(True)
    assert sys.stderr.getvalue() == ""


def test_counter_bar_advances_by_hand_and_is_silent_off_a_terminal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with counter(total=4, desc="load", unit="run") as bar:
        bar.update(2, "10 events")
    assert sys.stderr.getvalue() == ""
    monkeypatch.setattr(sys, "stderr", _Terminal())
    with counter(total=4, desc="load", unit="run") as bar:
        bar.update(3, "10 events")
    shown = sys.stderr.getvalue()
    assert "3/4" in shown and "run/s" in shown and "10 events" in shown


def test_durations_and_time_left_read_as_a_person_would_say_them() -> None:
    assert [human_seconds(s) for s in (0, 42.4, 60, 400, 3599.6, 3900, 100_000)] == [
        "0 s", "42 s", "1 min 00 s", "6 min 40 s", "1 h 00 min", "1 h 05 min", "27 h 46 min"]
    assert eta_note(400, 4, 36) == "6 min 40 s elapsed, about 1 h 00 min left"
    assert eta_note(400, 0, 36) == "6 min 40 s elapsed"  # no pace to go on yet
    assert eta_note(400, 4, 0) == "6 min 40 s elapsed"


def test_loader_progress_lines_say_time_elapsed_and_left(lo2_sample: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         ) -> None:
    """Off a terminal (a log file, nohup) there is no bar: each run's line says the time."""
    from loglead_lo2.loader.cli import main

    args = ["--root", str(lo2_sample), "--runs", "2", "--errors-per-run", "1",
            "--single-service", "token", "--save-base-sequences",
            "--output-dir", str(tmp_path / "out")]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if x.startswith("[load] run")]
    assert len(lines) == 2
    time_line = next(x for x in out.splitlines() if x.startswith("time: "))
    assert "(0 part(s) reused, 2 loaded); " in time_line and time_line.endswith(" lines/s")
    assert lines[0].startswith("[load] run 1/2 ") and " elapsed, about " in lines[0]
    assert lines[0].endswith(" left")
    assert lines[1].startswith("[load] run 2/2 ") and lines[1].endswith(" elapsed")
    # a third run appended: two parts reused, so no rate (their lines were not read again)
    assert main([*args[:2], "--runs", "3", *args[4:], "--append"]) == 0
    out = capsys.readouterr().out
    time_line = next(x for x in out.splitlines() if x.startswith("time: "))
    assert "(2 part(s) reused, 1 loaded)" in time_line and "lines/s" not in time_line
    assert "[load] run 1/3 " in out and "part reused" in out


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_silences_the_loader_progress(quiet: bool, lo2_sample: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from loglead_lo2.loader.cli import main

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    flags = ["--quiet"] if quiet else []
    try:
        assert main(["--root", str(lo2_sample), "--runs", "1", "--errors-per-run", "1",
                     "--single-service", "token", "--save-base-sequences",
                     "--output-dir", str(tmp_path / "out"), *flags]) == 0
    finally:
        set_progress(True)
    out = capsys.readouterr().out
    assert ("load + enhance" in terminal.getvalue()) is not quiet
    assert ("1/1 [" in terminal.getvalue()) is not quiet  # counted in runs, with rate/ETA
    assert ("[load] run 1/1 " in out) is not quiet
    assert "== LO2 loader summary ==" in out


# --- the command lines of user-commands.md ----------------------------------------------

USER_LINES = [
    """python demo/lo2_e2e/run_lo2_loader.py \\
  --root /path/to/lo2_runs --runs 5 --errors-per-run 1 \\
  --service-types code token refresh-token \\
  --save-parquet --output-dir demo/result/lo2""",
    """python demo/lo2_e2e/LO2_samples.py \\
  --phase full --if-contamination 0.15 --if-holdout-fraction 0.05 \\
  --if-threshold-percentile 99.5 --report-precision-at 200 --report-fp-alpha 0.01 \\
  --save-model models/lo2_if.joblib --dump-metadata""",
    """MPLBACKEND=Agg python demo/lo2_e2e/lo2_phase_f_explainability.py \\
  --root demo/result/lo2 --if-contamination 0.15 --nn-top-k 50 --shap-sample 200""",
    """python demo/lo2_e2e/LO2_samples.py --phase full --if-contamination 0.15 \\
  --if-item e_words --if-numeric e_chars_len --save-model models/lo2_if.joblib \\
  --report-precision-at 200 --report-fp-alpha 0.01 --dump-metadata""",
    """python demo/lo2_e2e/run_lo2_loader.py --root "$LO2_ROOT" --runs 5 --errors-per-run 1 \\
  --service-types code token refresh-token \\
  --save-parquet --save-events --save-base-sequences --output-dir demo/result/lo2""",
    """python demo/lo2_e2e/LO2_samples.py --phase full --root demo/result/lo2 \\
  --if-item e_words --if-numeric seq_len,duration_sec,e_words_len,e_trigrams_len \\
  --if-contamination 0.15 --if-holdout-fraction 0.2 \\
  --report-precision-at 200 --report-fp-alpha 0.01 \\
  --save-model models/lo2_if.joblib --dump-metadata \\
  --models event_lr_words,event_dt_trigrams,event_xgb_words,sequence_shap_lr_words \\
  --metrics-dir demo/result/lo2/metrics --save-enhancers""",
    """MPLBACKEND=Agg python demo/lo2_e2e/lo2_phase_f_explainability.py --root demo/result/lo2 \\
  --skip-if --sup-models event_lr_words,event_dt_trigrams,event_xgb_words,sequence_shap_lr_words \\
  --nn-source sequence_shap_lr_words --nn-top-k 50 --shap-sample 200 --shap-background 256 \\
  --shap-feature-threshold 2000 --shap-cell-threshold 2000000 --sup-holdout-fraction 0.2""",
    "python demo/lo2_e2e/LO2_samples.py --list-models",
    "python demo/lo2_e2e/LO2_samples.py --phase full --models event_lof_words,event_oov_words",
    """python demo/lo2_e2e/LO2_samples.py --phase full \\
  --models event_lr_words,event_lsvm_words,event_dt_trigrams,event_rf_words,event_xgb_words""",
    """python demo/lo2_e2e/LO2_samples.py --phase full \\
  --models event_lof_words,event_oneclass_svm_words,event_kmeans_words,event_rarity_words,\
event_oov_words""",
    """python demo/lo2_e2e/LO2_samples.py --phase full \\
  --models sequence_lr_numeric,sequence_lr_words,sequence_shap_lr_words""",
    "python demo/lo2_e2e/LO2_samples.py --phase if --load-model models/lo2_if.joblib",
    "python tools/lo2_result_scan.py --dry-run",
    'python demo/lo2_e2e/run_lo2_loader.py --root "$LO2_ROOT" --single-service token '
    "--save-parquet",
    "MODE=newest SPLIT=4 DRY_RUN=0 bash tools/extract-split-resume-lo2.sh",
    "MODE=newest SPLIT=4 CHUNK=2 DRY_RUN=0 bash tools/extract-split-resume-lo2.sh",
]


def _parsers() -> dict[str, Callable[[], argparse.ArgumentParser]]:
    from loglead_lo2.detection.cli import build_parser as detect
    from loglead_lo2.explain.cli import build_parser as explain
    from loglead_lo2.loader.cli import build_parser as load
    from loglead_lo2.tools.extract import build_parser as extract
    from loglead_lo2.tools.scan import build_parser as scan

    return {"demo/lo2_e2e/run_lo2_loader.py": load, "demo/lo2_e2e/LO2_samples.py": detect,
            "demo/lo2_e2e/lo2_phase_f_explainability.py": explain,
            "tools/lo2_result_scan.py": scan, "tools/extract-split-resume-lo2.sh": extract}


def _words(line: str) -> tuple[str, list[str]]:
    """(script, its arguments) of a command line, environment assignments and the
    interpreter left out."""
    words = shlex.split(line.replace("\\\n", " "), comments=True)
    while "=" in words[0] and not words[0].startswith("-"):
        words.pop(0)
    assert words[0] in ("python", "bash")
    return words[1], words[2:]


def _user_lines_in_reference() -> list[str]:
    """Every command line in the ```bash blocks of user-commands.md."""
    lines: list[str] = []
    block = False
    current = ""
    for raw in USER_COMMANDS.read_text("utf-8").splitlines():
        if raw.startswith("```"):
            block = raw.strip() == "```bash"
            continue
        if not block or not raw.strip():
            continue
        current += raw + "\n"
        if not raw.rstrip().endswith("\\"):
            lines.append(current.rstrip("\n"))
            current = ""
    return lines


@pytest.mark.parametrize("line", USER_LINES)
def test_user_command_line_parses(line: str) -> None:
    script, argv = _words(line)
    assert (ROOT / script).is_file()
    args = _parsers()[script]().parse_args(argv)
    assert args is not None


def test_user_commands_reference_is_covered() -> None:
    if not USER_COMMANDS.is_file():
        pytest.skip("../shared/lo2-reference/user-commands.md not present")
    ours = {tuple(shlex.split(line.replace("\\\n", " "), comments=True)) for line in USER_LINES}
    for line in _user_lines_in_reference():
        assert tuple(shlex.split(line.replace("\\\n", " "), comments=True)) in ours, line
