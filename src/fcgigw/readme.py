"""The README's setup guidance as HTML, for the diagnostics page. The README is the package's
long description, so an installed fcgigw carries it in its metadata: the page shows the part
for the web server in front of it, and needs no link to a copy somewhere else. Only the small
Markdown subset the README's sections use is rendered; anything else stays plain, escaped text.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from importlib import metadata

_HEADING = re.compile(r"^(#{1,6}) +(.+?) *$")
_ITEM = re.compile(r"^(?:[-*]|(\d+)\.) +(.*)$")
_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")
_NOTE_REFERENCE = re.compile(r"\bnotes? (\d+)\b")


@dataclass(frozen=True, slots=True)
class Section:
    """One heading of the README and the lines up to the next heading of any level."""

    level: int
    title: str
    lines: tuple[str, ...]


def readme_text() -> str | None:
    """The README from the installed package's metadata; None when fcgigw runs from a source
    tree that was never installed."""
    try:
        return metadata.metadata("fcgigw")["Description"] or None
    except metadata.PackageNotFoundError:
        return None


def anchor(title: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation but ``-`` and ``_`` dropped,
    spaces as ``-``."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def sections(text: str) -> dict[str, Section]:
    """Every heading of ``text`` by its anchor, in order (headings inside code fences are code)."""
    found: dict[str, Section] = {}
    title, level, lines = "", 0, []
    fenced = False
    for line in [*text.splitlines(), "# end"]:
        fenced ^= line.startswith("```")
        heading = None if fenced else _HEADING.match(line)
        if heading is None:
            lines.append(line)
            continue
        if title:
            found[anchor(title)] = Section(level, title, tuple(lines))
        title, level, lines = heading[2], len(heading[1]), []
    return found


def subsections(found: dict[str, Section], parent: str) -> list[Section]:
    """The sections one level below ``parent``, up to the next section at its level or above."""
    ordered = list(found.values())
    start = ordered.index(found[parent])
    children: list[Section] = []
    for section in ordered[start + 1 :]:
        if section.level <= found[parent].level:
            break
        if section.level == found[parent].level + 1:
            children.append(section)
    return children


@functools.lru_cache(maxsize=16)
def guidance_html(section_anchor: str) -> str | None:
    """The README section ``section_anchor`` as HTML, followed by the notes of the "Web
    servers" table it refers to. For "web-servers" itself: each server's part, folded. None
    without a README, or when it has no such section. The same for every request: cached."""
    text = readme_text()
    found = sections(text) if text else {}
    if section_anchor not in found:
        return None
    if section_anchor == "web-servers":
        parts = subsections(found, section_anchor)
        body = "\n".join(
            f"<details><summary>{inline(part.title)}</summary>{render(part.lines)}</details>"
            for part in parts
        )
        lines = tuple(line for part in parts for line in part.lines)
    else:
        body, lines = render(found[section_anchor].lines), found[section_anchor].lines
    known = notes(found)
    referenced = sorted((n for n in referenced_notes(lines) if n in known), key=int)
    if not referenced:
        return body
    items = "".join(f'<li id="note-{n}" value="{n}">{known[n]}</li>' for n in referenced)
    return f'{link_notes(body, referenced)}\n<ol class="notes">{items}</ol>'


def notes(found: dict[str, Section]) -> dict[str, str]:
    """The numbered notes under the "Web servers" table, by number, as inline HTML."""
    section = found.get("web-servers")
    blocks = _blocks(list(section.lines)) if section else iter(())
    return {
        number: inline(text)
        for block in blocks
        if _ITEM.match(block[0])
        for number, text in _items(block)
        if number
    }


def render(lines: tuple[str, ...] | list[str]) -> str:
    """Markdown lines as HTML: paragraphs, lists, fenced code, `code`, **bold**, links. Links
    within the README become plain text (their target is not on the page); http(s) ones stay."""
    out: list[str] = []
    for block in _blocks(list(lines)):
        if block[0].startswith("```"):
            code = "\n".join(block[1:-1] if block[-1].startswith("```") else block[1:])
            out.append(f"<pre><code>{html.escape(code)}</code></pre>")
        elif _ITEM.match(block[0]):
            out.append(_list_html(block))
        else:
            out.append(f"<p>{inline(' '.join(line.strip() for line in block))}</p>")
    return "\n".join(out)


def link_notes(rendered: str, numbers: Collection[str]) -> str:
    """Each "note N" in ``rendered`` as a link to ``#note-N``, for the N in ``numbers``."""

    def link(match: re.Match[str]) -> str:
        return f'<a href="#note-{match[1]}">{match[0]}</a>' if match[1] in numbers else match[0]

    return _NOTE_REFERENCE.sub(link, rendered)


def referenced_notes(lines: tuple[str, ...]) -> list[str]:
    """The note numbers ``lines`` mention, in order, each once."""
    return list(dict.fromkeys(_NOTE_REFERENCE.findall(" ".join(lines))))


def inline(text: str) -> str:
    """One paragraph's text as escaped HTML with its code, bold and links."""
    out: list[str] = []
    position = 0
    for match in _INLINE.finditer(text):
        start = match.start()
        out.append(html.escape(text[position:start]))
        code, bold, label, target = match.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{inline(bold)}</strong>")
        elif target.startswith(("https://", "http://")):
            out.append(f'<a href="{html.escape(target)}">{inline(label)}</a>')
        else:
            out.append(inline(label))
        position = match.end()
    out.append(html.escape(text[position:]))
    return "".join(out)


def _blocks(lines: list[str]) -> Iterator[list[str]]:
    """Runs of lines separated by blank lines; a fenced code block is one run, blanks and all."""
    block: list[str] = []
    fenced = False
    for line in lines:
        if line.startswith("```"):
            if fenced:
                yield [*block, line]
                block, fenced = [], False
                continue
            if block:
                yield block
            block, fenced = [], True
        if not line.strip() and not fenced:
            if block:
                yield block
            block = []
        else:
            block.append(line)
    if block:
        yield block


def _items(block: list[str]) -> Iterator[tuple[str | None, str]]:
    """A list block's items: (number or None, text with its indented continuation lines)."""
    number: str | None = None
    text: list[str] = []
    for line in block:
        item = _ITEM.match(line)
        if item and not line.startswith(" "):
            if text:
                yield number, " ".join(text)
            number, text = item[1], [item[2]]
        else:
            text.append(line.strip())
    if text:
        yield number, " ".join(text)


def _list_html(block: list[str]) -> str:
    items = list(_items(block))
    tag = "ol" if items[0][0] else "ul"
    start = f' start="{items[0][0]}"' if items[0][0] not in (None, "1") else ""
    body = "".join(f"<li>{inline(text)}</li>" for _, text in items)
    return f"<{tag}{start}>{body}</{tag}>"
