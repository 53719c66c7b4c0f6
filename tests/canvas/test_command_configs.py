"""Every command configures the same way (#21): a `...Config` dataclass, `--config FILE.yaml` for any of its
fields, flags (README's spellings) over the file, an unknown key as one line with a suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest

from canvas.cli import build_parser, main
from canvas.core.config_parser import config_from_args
from canvas.core.setup_config import ModelsInitConfig, SampleDataConfig
from canvas.curation.index_config import IndexBuildConfig, IndexQueryConfig, SubsetConfig
from canvas.labeling.config import ServerDirConfig, ServerStartConfig
from canvas.rlhf.score_config import ScoreConfig

# command, its config class, one YAML line, the flags it still needs, field read from the file and its value
COMMANDS = {
    "index build": (["index", "build"], IndexBuildConfig, "train_sample: 77", ["--curated", "{d}", "--output", "o"], "train_sample", 77),
    "index query": (["index", "query"], IndexQueryConfig, "text: a red cat", ["--index", "{d}"], "text", "a red cat"),
    "subset": (["subset"], SubsetConfig, "text: [a cat, a dog]", ["--curated", "{d}", "--index", "{d}", "-k", "3", "--output", "o"], "text", ["a cat", "a dog"]),
    "score": (["score"], ScoreConfig, "prompt: a cat", ["--reward", "brightness", "--images", "x.png"], "prompt", "a cat"),
    "models init": (["models", "init"], ModelsInitConfig, "preset: tiny-sdxl", [], "preset", "tiny-sdxl"),
    "data sample": (["data", "sample"], SampleDataConfig, "output: s.parquet", [], "output", Path("s.parquet")),
    "label server start": (["label", "server", "start"], ServerStartConfig, "port: 8123", [], "port", 8123),
    "label server stop": (["label", "server", "stop"], ServerDirConfig, "data_dir: ls", [], "data_dir", Path("ls")),
    "label server status": (["label", "server", "status"], ServerDirConfig, "data_dir: ls", [], "data_dir", Path("ls")),
}  # fmt: skip


def _parse(config_cls: type, argv: list[str]) -> object:
    return config_from_args(config_cls, build_parser().parse_args(argv))


@pytest.mark.parametrize("name", list(COMMANDS))
def test_config_file_sets_a_field_and_flags_complete_it(name: str, tmp_path: Path) -> None:
    command, config_cls, line, flags, field, value = COMMANDS[name]
    config = tmp_path / "c.yaml"
    config.write_text(line + "\n")
    flags = [f.format(d=tmp_path) for f in flags]
    parsed = _parse(config_cls, [*command, "--config", str(config), *flags])
    assert getattr(parsed, field) == value


@pytest.mark.parametrize("name", list(COMMANDS))
def test_unknown_config_key_is_one_line_with_a_suggestion(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command, _, line, _, field, _ = COMMANDS[name]
    config = tmp_path / "c.yaml"
    config.write_text(line.replace(field, field[:-1] + "x", 1) + "\n")  # a typo of the field's name
    assert main([*command, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("canvas: error:") and err.count("\n") == 1, err
    assert f"did you mean {field!r}" in err, err


def test_readme_spellings_and_repeated_flags_still_parse(tmp_path: Path) -> None:
    d = str(tmp_path)
    subset = _parse(
        SubsetConfig,
        ["subset", "--curated", d, "--index", d, "--text", "a", "--text", "b", "c",
         "--exclude-text", "x", "--exclude-text", "y", "--min-score", "0.2", "--exclude-min-score", "0.5",
         "--output", "o"],
    )  # fmt: skip
    assert subset.text == ["a", "b", "c"] and subset.exclude_text == ["x", "y"]
    assert (subset.min_score, subset.exclude_min_score, subset.k) == (0.2, 0.5, None)
    query = _parse(IndexQueryConfig, ["index", "query", "--index", d, "--image", "q.png", "-k", "4"])
    assert (query.image, query.k, query.limit) == (Path("q.png"), 4, 4)
    build = _parse(
        IndexBuildConfig, ["index", "build", "--curated", d, "--output", "o", "--train-sample", "9"]
    )
    assert build.train_sample == 9
    score = _parse(ScoreConfig, ["score", "--reward", "r", "--images", "a.png", "b.png", "--json"])
    assert score.images == [Path("a.png"), Path("b.png")] and score.json is True
    start = _parse(ServerStartConfig, ["label", "server", "start", "--port", "9", "--data-dir", d])
    assert (start.port, start.data_dir) == (9, tmp_path)
    models = _parse(ModelsInitConfig, ["models", "init", "--preset", "tiny", "--dir", d])
    assert (models.preset, models.dir) == ("tiny", tmp_path)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["subset", "--curated", "{d}", "--index", "{d}", "--text", "a", "--output", "o"], "-k N and --min-score"),
        (["subset", "--curated", "{d}", "--index", "{d}", "-k", "2", "--output", "o"], "--text is required"),
        (["index", "query", "--index", "{d}"], "exactly one of --text and --image"),
        (["index", "query", "--index", "{d}", "--text", "a", "--image", "b.png"], "exactly one of --text and --image"),
        (["index", "query", "--index", "{d}", "--text", "a", "-k", "0"], "-k must be at least 1"),
        (["subset", "--curated", "{d}/nope", "--index", "{d}", "--text", "a", "-k", "1", "--output", "o"], "nope"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line(argv: list[str], words: str, tmp_path: Path, capsys) -> None:
    assert main([a.format(d=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("canvas: error:") and err.count("\n") == 1 and words in err, err


def test_models_init_preset_from_config_is_checked(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("preset: huge\n")
    assert main(["models", "init", "--config", str(config)]) == 2
    assert "expected one of tiny" in capsys.readouterr().err


def test_demo_quick_shortens_only_the_knobs_left_at_their_defaults(tmp_path: Path, capsys) -> None:
    """`--quick --max_prompts 5 --ddpo_epochs 3` runs 5 prompts and 3 epochs (quick set 10 and 1 over them
    before); the knobs not given take quick's values. An overlap above the number of simulated annotators
    is refused before the run (it failed at the annotate stage, after generation)."""
    from canvas.loop.config import QUICK, DemoConfig

    quick = DemoConfig(output=tmp_path, quick=True, max_prompts=5, ddpo_epochs=3)
    assert (quick.max_prompts, quick.ddpo_epochs) == (5, 3)
    assert all(getattr(quick, k) == v for k, v in QUICK.items() if k not in ("max_prompts", "ddpo_epochs"))
    assert main(["demo", "--output", str(tmp_path / "o"), "--overlap", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "canvas: error: --overlap 4: must be from 1 to the number of simulated annotators (3"
    )
    assert not (tmp_path / "o").exists()


def test_a_quoted_home_path_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--output '~/s.parquet'` (quoted, or a YAML value: no shell expands it) wrote ./~/s.truth.json beside
    a Parquet file elsewhere; every path knob now reads `~` as the home folder."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert main(["data", "sample", "--output", "~/s.parquet"]) == 0
    assert (home / "s.parquet").is_file() and (home / "s.truth.json").is_file()
    assert not (work / "~").exists()
