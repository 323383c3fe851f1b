"""Print modelshelf's dependencies and those of the extras named, from pyproject.toml, one a line.

The images install these in a layer of their own, before modelshelf's source is copied, so a
change to the source rebuilds only the small layer that installs modelshelf itself (--no-deps).
Usage: python requirements.py PYPROJECT [EXTRA ...]
"""

from __future__ import annotations

import re
import sys
import tomllib


def requirements(pyproject: dict, extras: list[str]) -> list[str]:
    project = pyproject["project"]
    name = project["name"]
    optional = project.get("optional-dependencies", {})
    found: list[str] = list(project.get("dependencies", []))
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"{name} has no extra {extra!r}: expected one of {sorted(optional)}")
        seen.add(extra)
        for requirement in optional[extra]:
            own = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", requirement.replace(" ", ""))
            if own:
                pending.extend(own.group(1).split(","))
            else:
                found.append(requirement)
    return list(dict.fromkeys(found))


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as file:
        print("\n".join(requirements(tomllib.load(file), sys.argv[2:])))
