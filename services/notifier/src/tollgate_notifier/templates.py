"""Email templates: `Subject:` on the first line, a blank line, the body; `{{Name}}` placeholders."""

import html
import re
from dataclasses import dataclass
from pathlib import Path

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9]*)\s*\}\}")
TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class Email:
    subject: str
    body: str


class MissingValue(KeyError):
    pass


def render(template: str, values: dict[str, str]) -> Email:
    """Fill every placeholder; a placeholder without a value is an error, never blank text."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise MissingValue(name)
        return values[name]

    head, _, body = template.partition("\n\n")
    if not head.startswith("Subject:"):
        raise ValueError("a template starts with a 'Subject:' line")
    subject = PLACEHOLDER.sub(fill, head.removeprefix("Subject:").strip())
    # Header injection guard: a value with a newline must not add headers.
    return Email(subject=" ".join(subject.split()), body=PLACEHOLDER.sub(fill, body))


URL = re.compile(r"https?://[^\s<>\"']+")


def html_of(email: Email) -> str:
    """The HTML part beside the text one, made from it: paragraphs as paragraphs, an
    indented line (a key, a link to copy) as code, every URL a link. One source of words,
    so the two parts never say different things."""

    def inline(text: str) -> str:
        out, last = [], 0
        for m in URL.finditer(text):
            out += [
                html.escape(text[last : m.start()]),
                f'<a href="{html.escape(m.group(0))}">{html.escape(m.group(0))}</a>',
            ]
            last = m.end()
        return "".join(out) + html.escape(text[last:])

    blocks = []
    for paragraph in email.body.strip().split("\n\n"):
        lines = paragraph.splitlines()
        if all(line.startswith("    ") for line in lines):
            code = "<br>".join(inline(line.strip()) for line in lines)
            blocks.append(f'<p style="font-family:monospace;font-size:15px;background:#f3f4f6;padding:8px">{code}</p>')
        else:
            blocks.append(f"<p>{inline(' '.join(line.strip() for line in lines))}</p>")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(email.subject)}</title></head>"
        '<body style="font-family:system-ui,sans-serif;line-height:1.5;color:#111;max-width:36rem">'
        + "".join(blocks)
        + "</body></html>"
    )


def load(name: str, directory: Path = TEMPLATES) -> str:
    return (directory / f"{name}.txt").read_text()
