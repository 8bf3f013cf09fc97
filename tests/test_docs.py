"""The CLIs as the docs describe them (after sqlite-utils' test_docs.py): every command has --help and --json, and
every command, subcommand and --option the READMEs name in code exists. Read from the click objects themselves,
so a command or option added, renamed or removed is checked without editing this file."""

import importlib
import importlib.util
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "pipeline/README.md", "query/README.md", "serve/README.md", "models/demo/MODEL_CARD.md")
# "styleatlas-x sub": why that command has no --json. Empty: every command that runs prints JSON on request
# (a group that only holds subcommands, such as `query.py mapper`, runs nothing and is not a command here).
NO_JSON: dict[str, str] = {}


# --------------------------------------------------------------------------- the CLIs
def scripts() -> dict[str, str]:
    """Console script -> its CLI module, from pyproject.toml's [project.scripts] and the checkout's shims."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    table = re.search(r"^\[project\.scripts\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S).group(1)
    found = dict(re.findall(r'^([\w-]+)\s*=\s*"([\w.]+):\w+"', table, re.M))
    for shim in ("build_index.py", "query.py"):
        found[shim] = re.search(r"^from ([\w.]+) import main$", (ROOT / shim).read_text(encoding="utf-8"), re.M)[1]
    return found


def click_root(module: str) -> click.Command:
    """A CLI module's click object: each names it `cli` (its `main` runs it with the one-line error handling)."""
    root = getattr(importlib.import_module(module), "cli", None)
    assert isinstance(root, click.Command), f"{module} has no click command named cli"
    return root


def runnable(cmd: click.Command, path=()):
    """(path, command) for every command that does something: not a group that only holds subcommands."""
    if not isinstance(cmd, click.Group) or cmd.invoke_without_command:
        yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from runnable(sub, (*path, name))


def option_names(cmd: click.Command) -> set:
    return {name for p in cmd.params for name in (*p.opts, *p.secondary_opts) if name.startswith("--")} | {"--help"}


COMMANDS = [
    pytest.param(script, path, id=" ".join((script, *path)))
    for script, module in scripts().items()
    if script.startswith("styleatlas-")  # the shims run the same modules
    for path, _ in runnable(click_root(module))
]


def test_every_console_script_has_a_cli_module():
    assert set(scripts()) >= {"build_index.py", "query.py", "styleatlas-build", "styleatlas-query"}
    assert len(COMMANDS) > len(scripts())  # the groups' subcommands were found


@pytest.mark.parametrize("script,path", COMMANDS)
def test_every_command_has_help_and_json(script, path):
    root = click_root(scripts()[script])
    result = CliRunner().invoke(root, [*path, "--help"], catch_exceptions=False)
    assert result.exit_code == 0 and "Usage:" in result.output, result.output
    cmd = root
    for name in path:
        cmd = cmd.commands[name]
    assert cmd.help or cmd.short_help, f"{script} {' '.join(path)} has no help text"
    name = " ".join((script, *path))
    assert "--json" in option_names(cmd) or name in NO_JSON, f"{name} has no --json"


# --------------------------------------------------------------------------- what the docs name
ENTRY = re.compile(r"(?<![\w/.-])(?:build_index\.py|query\.py|styleatlas-[\w-]+)|(?<![\w.-])python3? -m [\w.]+")
PLAIN = re.compile(r"[a-z][a-z0-9_-]*")


def code_texts(markdown: str) -> list:
    """The code in a Markdown text: each line of a fenced block (a trailing backslash joins the next), and each
    inline `span` outside the blocks."""
    texts, prose, fence = [], [], None
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fence = None if fence is not None else []
            continue
        if fence is None:
            prose.append(line)
        elif texts and texts[-1].endswith("\\"):
            texts[-1] = texts[-1][:-1] + " " + line.strip()
        else:
            texts.append(line)
    return texts + re.findall(r"`([^`\n]+)`", "\n".join(prose))


def mentions(text: str) -> list:
    """(entry, words, --options) for each command a line of code names; `query.py a / b` names two commands."""
    found = []
    starts = [m.start() for m in ENTRY.finditer(text)] + [len(text)]
    for m, end in zip(ENTRY.finditer(text), starts[1:]):
        rest = re.split(r"\s#|\||;|&&", text[m.end() : end])[0]
        rest = re.sub(r"(?<=[a-z0-9])\s+/\s+(?=[a-z])", "/", rest)  # "direction / channels" -> one token
        tokens = re.findall(r"\"[^\"]*\"|'[^']*'|\S+", rest)
        words = []
        for token in tokens:
            if not all(PLAIN.fullmatch(part) for part in token.split("/")):
                break
            words.append(token.split("/"))
        options = {t.strip("[](),`").split("=")[0] for t in tokens if t.strip("[](`").startswith("--")}
        entry = re.sub(r"^python3? -m ", "python -m ", m.group(0))
        for chosen in _choices(words):
            found.append((entry, chosen, sorted(o.rstrip(".,:") for o in options)))
    return found


def _choices(words: list) -> list:
    """[["mapper"], ["train", "list"]] -> [["mapper", "train"], ["mapper", "list"]]."""
    out = [[]]
    for alternatives in words:
        out = [[*head, word] for head in out for word in alternatives]
    return out


def problems(markdown: str, where: str = "") -> list:
    """One line for each command, subcommand or --option the Markdown's code names that does not exist."""
    known, bad = scripts(), []
    for entry, words, options in (m for text in code_texts(markdown) for m in mentions(text)):
        named = " ".join((entry, *words))
        if entry.startswith("python -m "):
            module = entry.split()[-1]
            spec = importlib.util.find_spec(module)
            if spec is None:
                bad.append(f"{where}`{named}`: no module {module}")
                continue
            if spec.submodule_search_locations is not None and importlib.util.find_spec(f"{module}.__main__") is None:
                bad.append(f"{where}`{named}`: the package {module} has no __main__")
                continue
            cli_module = f"{module}.cli" if spec.submodule_search_locations is not None else module
            if importlib.util.find_spec(cli_module) is None or "click" not in Path(
                importlib.util.find_spec(cli_module).origin
            ).read_text(encoding="utf-8"):
                continue  # not one of our click CLIs (python -m pytest, a training script): existing is enough
        elif entry in known:
            cli_module = known[entry]
        else:
            bad.append(f"{where}`{named}`: no such script (there are {', '.join(sorted(known))})")
            continue
        cmd = click_root(cli_module)
        for word in words:
            if not isinstance(cmd, click.Group) or word not in cmd.commands:
                if isinstance(cmd, click.Group):
                    bad.append(f"{where}`{named}`: {entry} has no command {word!r}")
                    cmd = None
                break  # else a positional argument of a command: the options that follow are its own
            cmd = cmd.commands[word]
        if cmd is None:
            continue
        missing = [o for o in options if o not in option_names(cmd)]
        if missing:
            bad.append(f"{where}`{named}`: no option {', '.join(missing)}")
    return bad


@pytest.mark.parametrize("doc", DOCS)
def test_every_command_the_docs_name_exists(doc):
    markdown = (ROOT / doc).read_text(encoding="utf-8")
    assert [m for text in code_texts(markdown) for m in mentions(text)], f"{doc} names no command"
    assert problems(markdown, f"{doc}: ") == []


def test_a_doc_naming_a_missing_command_or_option_fails():
    good = "```bash\npython query.py mapper train red --steps 2 --json\nstyleatlas-build merge --out a  # ok\n```\n"
    assert problems(good) == []
    assert problems("Also `query.py direction / channels --top-k 3` and `python -m serve --port 1`.") == []
    bad = (
        "```bash\n"
        "python query.py frobnicate red --atlas atlas\n"
        "torchrun --nproc_per_node=2 build_index.py --out a \\\n"
        "    --no-such-option 3\n"
        "```\n"
        "Run `styleatlas-nothing`, `query.py mapper forget red`, `query.py edit / shout`\n"
        "or `.venv/bin/python -m query.nope`.\n"
    )
    found = problems(bad)
    assert len(found) == 6, found
    for expected in (
        "has no command 'frobnicate'",
        "no option --no-such-option",
        "`styleatlas-nothing`: no such script",
        "has no command 'forget'",
        "`query.py shout`: query.py has no command 'shout'",
        "no module query.nope",
    ):
        assert sum(expected in line for line in found) == 1, (expected, found)
