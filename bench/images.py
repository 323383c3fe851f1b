"""Image sizes, read from the local image store (podman or buildah), for images built by
``make images``: any image whose name mentions modelshelf, plus the local Python base image."""

from __future__ import annotations

import json
import shutil
import subprocess

NAME_PARTS = ("modelshelf", "python:3.11-slim")


def measure() -> dict:
    """``{"tool": ..., "images": [{"name", "size_mb", "created"}]}`` or why there is none."""
    for tool in ("podman", "buildah"):
        path = shutil.which(tool)
        if not path:
            continue
        done = subprocess.run(
            [path, "images", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            return {"tool": tool, "error": done.stderr.strip()[-500:], "images": []}
        images = []
        seen: set[str] = set()
        for image in json.loads(done.stdout or "[]"):
            image_id = str(image.get("Id") or image.get("id") or "")
            if image_id in seen:
                continue
            seen.add(image_id)
            names = image.get("Names") or image.get("names") or []
            wanted = [n for n in names if any(part in n for part in NAME_PARTS)]
            if not wanted:
                continue
            images.append(
                {
                    "name": ", ".join(sorted(wanted)),
                    "id": image_id[:12],
                    "size_mb": _megabytes(image.get("Size") or image.get("size") or 0),
                    "created": image.get("CreatedAt") or image.get("created") or "",
                }
            )
        return {"tool": tool, "images": sorted(images, key=lambda i: i["name"])}
    return {"tool": None, "images": [], "error": "neither podman nor buildah is installed"}


def _megabytes(size: object) -> float | None:
    """podman gives bytes; buildah a text such as ``"201 MB"``."""
    if isinstance(size, int | float):
        return round(size / 1e6, 1)
    number, _, unit = str(size).partition(" ")
    scale = {"B": 1e-6, "kB": 1e-3, "KB": 1e-3, "MB": 1, "GB": 1e3}.get(unit.strip())
    try:
        return round(float(number) * scale, 1) if scale else None
    except ValueError:
        return None
