"""Email templates: `Subject:` on the first line, a blank line, the body; `{{Name}}` placeholders."""

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


def load(name: str, directory: Path = TEMPLATES) -> str:
    return (directory / f"{name}.txt").read_text()
