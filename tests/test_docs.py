"""Every relative link in the README and the docs points at a file that exists, and every
``#anchor`` into a markdown file at one of its headings (GitHub's slugs)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = sorted(
    {ROOT / "README.md"} | {p for d in ("docs", "examples", "recipes") for p in (ROOT / d).rglob("*.md")}
)
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
CODE_SPAN = re.compile(r"(`+).*?\1")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto: ...


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans blanked."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(CODE_SPAN.sub("", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lowercased, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of ``path``'s headings; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[str]:
    found = []
    for line in prose(path.read_text()):
        found += INLINE_LINK.findall(line)
        m = REFERENCE_LINK.match(line)
        if m:
            found.append(m.group(1))
    return [t for t in found if not EXTERNAL.match(t)]


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """``path``'s relative links whose file, or whose anchor in a markdown file, does not exist."""
    broken = []
    for target in links(path):
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and dest.is_file() and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(root)}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = broken_links(page)
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_pages_include_the_readme_and_the_docs():
    names = {str(p.relative_to(ROOT)) for p in PAGES}
    assert {"README.md", "docs/README.md", "docs/options.md", "recipes/accelerate/README.md"} <= names


def test_a_broken_link_or_anchor_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n## Two machines (`hsdp`)\n## Two machines (`hsdp`)\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/a.md) [ok](docs/a.md#two-machines-hsdp) [ok](docs/a.md#two-machines-hsdp-1) [ok](#top)\n"
        "[web](https://example.com/x.md) `[code](nowhere.md)`\n"
        "```\n[fenced](nowhere.md)\n```\n"
        "# Top\n"
        "[gone](docs/b.md) [bad anchor](docs/a.md#two-machines) [same page](#nope)\n"
        "[ref]: docs/c.md\n"
    )
    assert broken_links(page, tmp_path) == [
        "docs/b.md: no such file",
        "docs/a.md#two-machines: no heading #two-machines in docs/a.md",
        "#nope: no heading #nope in README.md",
        "docs/c.md: no such file",
    ]


@pytest.mark.parametrize(
    "heading,anchor",
    [
        ("GPUs and FSDP2", "gpus-and-fsdp2"),
        ("Re-runs, preemption and failing disks", "re-runs-preemption-and-failing-disks"),
        ("A learned reward model as a tier (`r1rl.rewards.reward_model`)",
         "a-learned-reward-model-as-a-tier-r1rlrewardsreward_model"),
        ("Unit tests: decided by a judge the program cannot reach",
         "unit-tests-decided-by-a-judge-the-program-cannot-reach"),
    ],
)  # fmt: skip
def test_slugs_follow_github(heading, anchor):
    assert slug(heading) == anchor
