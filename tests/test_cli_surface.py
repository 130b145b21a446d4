"""The command line as one surface: light commands start without torch, tables stay whole in a
pipe or a narrow terminal, and shared options mean the same in every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.table import Table

import merkit
from cli_helpers import run
from merkit.cli.app import console, print_table
from test_report import write_run

# Run `merkit ARGS` in a fresh interpreter, then say which heavy modules it loaded.
PROBE = (
    "import sys\n"
    "from merkit.cli import main\n"
    "main(sys.argv[1:])\n"
    "heavy = ('torch', 'sklearn', 'cv2', 'pandas')\n"
    "print('LOADED', *[m for m in heavy if m in sys.modules], file=sys.stderr)\n"
)


def merkit_env() -> dict[str, str]:
    source = str(Path(merkit.__file__).resolve().parents[1])  # the merkit under test
    return {**os.environ, "PYTHONPATH": source}


def loaded_modules(args: list[str], cwd: Path) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        env=merkit_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(line for line in out.stderr.splitlines() if line.startswith("LOADED"))
    return line.split()[1:]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "cabm-loso"
    write_run(run)
    return run


@pytest.mark.parametrize(
    "args",
    [["--help"], ["datasets"], ["score", "PREDICTIONS"], ["report", "RUN"], ["train", "--help"]],
    ids=["help", "datasets", "score", "report", "train-help"],
)
def test_commands_that_do_not_train_start_without_torch(
    args: list[str], run_folder: Path, tmp_path: Path
) -> None:
    """Importing torch and the models costs seconds at every start: only training and
    prediction may pay for it."""
    args = [
        str(run_folder / "predictions.csv") if a == "PREDICTIONS" else str(run_folder)
        if a == "RUN" else a
        for a in args
    ]  # fmt: skip
    if args[0] == "score":
        args += ["--out", str(tmp_path / "m.json")]
    loaded = loaded_modules(args, tmp_path)
    assert "torch" not in loaded
    assert args[0] != "datasets" or loaded == []  # listing loaders reads no sheet (no pandas)


def test_the_probe_can_see_torch(tmp_path: Path) -> None:
    """The check above can fail: a command that trains does load torch."""
    timings = str(tmp_path / "timings.json")
    args = ["models", "--kind", "maps", "--timing", "--timing-cache", timings, "--quiet"]
    loaded = loaded_modules(args, tmp_path)
    assert "torch" in loaded


def test_models_into_a_pipe_prints_whole_rows(tmp_path: Path) -> None:
    """`merkit models | cat`: no box drawing, one line per model, names and descriptions whole."""
    from merkit.models import get_descriptor, list_models

    out = subprocess.run(
        [sys.executable, "-c", "from merkit.cli import main; main()", "models"],
        cwd=tmp_path,
        env={**merkit_env(), "COLUMNS": "40"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert not set("│┃━─┏┗") & set(out.stdout)
    for name in list_models():
        row = next(line for line in out.stdout.splitlines() if line.split()[:1] == [name])
        assert get_descriptor(name).summary in row


def wide_table() -> Table:
    table = Table(title="models")
    table.add_column("model")
    table.add_column("description", overflow="fold")
    table.add_row("offapexnet", "Off-ApexNet: two streams of onset-apex flow, long enough to fold")
    return table


def test_a_narrow_terminal_gets_plain_rows_and_a_wide_one_the_box(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(console, "_force_terminal", True)
    monkeypatch.setattr(console, "width", 30)
    print_table(wide_table())
    narrow = capsys.readouterr().out
    assert "offapexnet  Off-ApexNet: two streams of onset-apex flow, long enough to fold" in narrow
    assert "│" not in narrow
    monkeypatch.setattr(console, "width", 200)
    print_table(wide_table())
    assert "│ offapexnet │" in capsys.readouterr().out


def help_text(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    """`merkit COMMAND --help` as words (panel borders and line breaks removed)."""
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0
    return " ".join(out.replace("│", " ").split())


def test_cache_and_quiet_mean_the_same_in_every_command(capsys: pytest.CaptureFixture[str]):
    """--cache is the preprocessing cache and --quiet turns progress off wherever they apply."""
    for command in ("prepare", "train", "audit", "fit"):
        text = help_text(command, capsys)
        assert "--cache" in text and "Preprocessing cache folder" in text, command
        assert "--quiet" in text and "No progress display" in text, command
    for command in ("predict", "demo", "models"):
        assert "No progress display" in help_text(command, capsys), command
    assert "--out " not in help_text("prepare", capsys)  # the cache is --cache, as elsewhere
