"""The README and docs/ hold together and with the code: links resolve, named paths exist, the
architecture tree is the package, the API page lists every public name, and the README stays short."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
PAGES = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(text: str) -> list[str]:
    return LINK.findall(prose(text))


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", text)):
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", plain.lower()).replace(" ", "-")
        repeat = counts.get(slug, 0)
        counts[slug] = repeat + 1
        found.add(slug if repeat == 0 else f"{slug}-{repeat}")
    return found


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in links(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            problems.append(f"{target}: {os.path.relpath(dest, REPO_ROOT)} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            problems.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO_ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_link_check_catches_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# A heading\n\n## `_target_` allowlist\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#a-heading) [ok](there.md#_target_-allowlist) [web](https://example.org/x)\n"
        "`[code](missing.md)`\n```\n[fenced](missing.md)\n```\n"
        "[gone](missing.md) [bad anchor](there.md#nowhere)\n"
    )
    problems = broken_links(page)
    assert len(problems) == 2
    assert problems[0].startswith("missing.md:") and "#nowhere" in problems[1]


def test_the_readme_is_short_and_names_the_test_command() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "uv run pytest" in text  # .ci/run runs exactly this


def test_docs_import_the_package_as_als() -> None:
    offenders = [p.name for p in PAGES if "import alexnet_study as ast" in p.read_text()]
    assert offenders == []


PACKAGE_PATH = re.compile(r"`(alexnet_study/[^`\s:]*)")


def missing_package_paths(page: Path) -> list[str]:
    """Every `alexnet_study/...` path a page names in backticks that is not in the repository."""
    named = PACKAGE_PATH.findall(FENCE.sub("", page.read_text()))
    return sorted({path for path in named if not (REPO_ROOT / path.rstrip("/.,;")).exists()})


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO_ROOT)) for p in PAGES])
def test_every_package_path_named_exists(page: Path) -> None:
    assert missing_package_paths(page) == []


def test_the_path_check_catches_a_moved_module(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("`alexnet_study/config/validate.py` and `alexnet_study/config/allowlist.py`\n")
    assert missing_package_paths(page) == ["alexnet_study/config/allowlist.py"]


def tree_paths(text: str) -> set[str]:
    """The paths of the first fenced tree after "## The folder tree": one name a line, two spaces a level."""
    block = FENCE.search(text, text.index("## The folder tree")).group(0).splitlines()[1:-1]
    stack: list[str] = []
    paths = set()
    for line in block:
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0].rstrip("/")
        stack[depth:] = [name]
        paths.add("/".join(stack))
    return paths


def test_the_architecture_tree_is_the_package() -> None:
    listed = tree_paths((REPO_ROOT / "docs" / "architecture.md").read_text())
    package = REPO_ROOT / "alexnet_study"
    actual = {"alexnet_study"} | {
        str(p.relative_to(REPO_ROOT))
        for p in package.rglob("*")
        if "__pycache__" not in p.parts and (p.is_dir() or p.suffix in (".py", ".sh"))
    }
    assert sorted(listed - actual) == []  # named in the tree, not in the package
    assert sorted(actual - listed) == []  # in the package, missing from the tree


def test_the_tree_parser_nests_by_indentation() -> None:
    text = "## The folder tree\n\n```\nalexnet_study/\n  config/   x\n    cli.py   y\n  api.py\n```\n"
    assert tree_paths(text) == {
        "alexnet_study",
        "alexnet_study/config",
        "alexnet_study/config/cli.py",
        "alexnet_study/api.py",
    }


def names_in_api_table(text: str) -> set[str]:
    """The names in the first column of api.md's "Every name" table (`name(args)` counts as name)."""
    section = text[text.index("## Every name") :].split("\n## ")[0]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {re.match(r"\w+", span).group(0) for cell in first_cells for span in re.findall(r"`([^`]+)`", cell)}


def test_the_api_page_lists_every_public_name() -> None:
    import alexnet_study

    listed = names_in_api_table((REPO_ROOT / "docs" / "api.md").read_text())
    assert sorted(set(alexnet_study.__all__) - listed) == []  # public, undocumented
    assert sorted(listed - set(alexnet_study.__all__)) == []  # documented, not public


def test_the_api_table_parser_reads_first_cells_only() -> None:
    text = "## Every name\n\n| name | what |\n| --- | --- |\n| `fit(x=1)`, `Run` | `not_this` |\n\n## Next\n| `nor_this` |\n"
    assert names_in_api_table(text) == {"fit", "Run"}
