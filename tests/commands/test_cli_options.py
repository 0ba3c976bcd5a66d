"""The command line's forms: every default in every `--help`, `serve [MODEL]`, `--config FILE`
(YAML and TOML, flags win), `--print-config`, and `generate` needing a prompt or reading stdin."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chatstream import cli
from chatstream.commands.help_defaults import needs_default

REPO = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    return cli.parse_command_line(cli.build_parser(), list(argv))


def every_parser(parser: argparse.ArgumentParser, path: str = "chatstream"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_parser(sub, f"{path} {name}")


def test_every_help_shows_every_default() -> None:
    parsers = dict(every_parser(cli.build_parser()))
    assert {"chatstream serve", "chatstream chat", "chatstream generate", "chatstream warmup",
            "chatstream bench"} <= set(parsers)
    missing = []
    for path, parser in parsers.items():
        for action in parser._actions:
            shown = needs_default(action) or action.default is argparse.SUPPRESS and action.option_strings and (
                action.dest in ("log_level", "log_format"))
            if shown and action.help != argparse.SUPPRESS and "default:" not in (action.help or "").lower():
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing
    serve_help = " ".join(parsers["chatstream serve"].format_help().split())  # unwrapped
    for expected in ("--port PORT port to listen on (default: 8000)", "--host HOST address to listen on",
                     "(default: 127.0.0.1)", "together) (default: 16)", "the next gets 429 (default: 64)",
                     "--no-prefix-caching do not share KV blocks of equal prefixes (default: off)"):
        assert expected in serve_help


def test_serve_takes_the_model_as_a_positional_or_a_flag() -> None:
    assert parse("serve", "/models/a").model == "/models/a"
    assert parse("serve", "--model", "/models/b").model == "/models/b"
    assert parse("serve").model == "smollm2"
    assert parse("serve", "/models/a", "--model", "/models/a").model == "/models/a"
    with pytest.raises(SystemExit):
        parse("serve", "/models/a", "--model", "/models/b")
    assert parse("chat", "/models/c").model == "/models/c" and parse("warmup", "/models/d").model == "/models/d"


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "model: /models/y\nport: 9100\nnum-concurrent: 3\nno_prefix_caching: true\n"
              "cors-origin: [https://a.example]\ntemperature: 0\nlog-format: json\n"),
    (".toml", 'model = "/models/y"\nport = 9100\nnum-concurrent = 3\nno_prefix_caching = true\n'
              'cors-origin = ["https://a.example"]\ntemperature = 0\nlog-format = "json"\n'),
])
def test_a_config_file_sets_options_and_flags_win(tmp_path: Path, suffix: str, text: str) -> None:
    config = write(tmp_path / f"serve{suffix}", text)
    args = parse("serve", "--config", config)
    assert (args.model, args.port, args.num_concurrent, args.no_prefix_caching) == ("/models/y", 9100, 3, True)
    assert args.cors_origin == ["https://a.example"] and args.temperature == 0.0 and args.log_format == "json"
    assert args.max_queue == 64  # not in the file: the default
    flags = parse("serve", "/models/flag", "--config", config, "--port", "9200", "--cors-origin", "https://b.example",
                  "--log-format", "text")
    assert (flags.model, flags.port, flags.num_concurrent) == ("/models/flag", 9200, 3)
    assert flags.cors_origin == ["https://b.example"] and flags.log_format == "text"
    # Before the subcommand, the global flags win over the file as well.
    assert parse("--log-format", "text", "serve", "--config", config).log_format == "text"


@pytest.mark.parametrize("text, message", [
    ("prot: 8000\n", "unknown option 'prot'; the options are: "),
    ("port: eighty\n", "port: invalid value 'eighty'"),
    ("port: 80.5\n", "port: must be an integer"),
    ("no-prefix-caching: yes please\n", "must be true or false"),
    ("locale: fr\n", "locale: must be one of en, ja"),
    ("- port\n", "must hold a mapping"),
    ("port: [1\n", "is not valid YAML"),
])
def test_a_wrong_config_file_is_an_error_naming_the_key(tmp_path: Path, capsys, text: str, message: str) -> None:
    config = write(tmp_path / "bad.yaml", text)
    with pytest.raises(SystemExit) as info:
        parse("serve", "--config", config)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_print_config_shows_the_effective_options_and_reads_back(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")  # what main() sets when stderr is no terminal: undone after the test
    config = write(tmp_path / "serve.toml", 'port = 9100\napi-key = "s3cret"\nmax-queue = 5\n')
    assert cli.main(["serve", "/models/p", "--config", config, "--max-queue", "7", "--print-config"]) == 0
    printed = capsys.readouterr().out
    values = yaml.safe_load(printed)
    assert (values["model"], values["port"], values["max-queue"], values["host"]) == ("/models/p", 9100, 7, "127.0.0.1")
    assert "s3cret" not in printed and "# api-key: (set; not shown)" in printed
    assert "config" not in values and "print-config" not in values
    again = write(tmp_path / "printed.yaml", printed)
    assert cli.main(["serve", "--config", again, "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == {**values, "api-key": None}  # the secret stayed out


def test_generate_needs_a_prompt_or_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(""))
    with pytest.raises(SystemExit, match="give a prompt"):
        cli._prompts(parse("generate"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("  What is 2 + 2?\n"))
    assert cli._prompts(parse("generate")) == ["What is 2 + 2?"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    with pytest.raises(SystemExit, match="stdin held no prompt"):
        cli._prompts(parse("generate"))
    assert cli._prompts(parse("generate", "a", "b")) == ["a", "b"]


def test_generate_reads_its_prompt_from_a_pipe(tmp_path: Path, tiny_model_factory) -> None:
    model, tokenizer = tiny_model_factory("llama")
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    env = {**os.environ, "PYTHONPATH": str(REPO), "CHATSTREAM_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "chatstream.cli", "generate", "--model", str(tmp_path / "tiny"), "--max-tokens", "4",
         "--raw", "--num-kv-blocks", "16"], input="hello from a pipe\n", capture_output=True, text=True,
        env=env, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("### hello from a pipe\n") and "[4 tokens, finish_reason=length]" in result.stdout
    empty = subprocess.run([sys.executable, "-m", "chatstream.cli", "generate", "--model", str(tmp_path / "tiny")],
                           input="", capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert empty.returncode == 1 and "stdin held no prompt" in empty.stderr
