"""Image sizes of the images ``make images`` builds, read from the local image store.

Building every image takes ~20 minutes on 2 cores, more than the whole of ``make bench`` may
take on a fresh machine, so the bench never builds: it reports the size of each image already
built and says "not built — run `make images`" for the others. The image names, the tag and the
builder are the ones ``images/build.sh`` uses (IMAGE_PREFIX, IMAGE_TAG, IMAGE_BUILDER).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from bench.config import REPO

# What images/build.sh builds by default, in its order (mlflowserver-conda is opt-in).
IMAGES = ("base", "storage-initializer", "sklearnserver", "xgboostserver", "mlflowserver")
NOT_BUILT = "not built — run `make images`"

# The inspect command per builder, as images/build.sh reads sizes (bytes).
INSPECT = {
    "docker": ["image", "inspect", "--format", "{{.Size}}"],
    "podman": ["image", "inspect", "--format", "{{.Size}}"],
    "buildah": ["inspect", "--type", "image", "--format", "{{.ImageSize}}"],
}


def builder() -> tuple[str | None, str]:
    """The image tool images/build.sh would use here, and why none when there is none."""
    wanted = os.environ.get("IMAGE_BUILDER", "")
    if wanted:
        if wanted not in INSPECT:
            return None, f"IMAGE_BUILDER={wanted}: expected one of {sorted(INSPECT)}"
        return (wanted, "") if shutil.which(wanted) else (None, f"{wanted} is not installed")
    if shutil.which("docker") and _answers(["docker", "info"]):
        return "docker", ""
    for tool in ("podman", "buildah"):
        if shutil.which(tool):
            return tool, ""
    return None, "no docker engine, podman or buildah here"


def _answers(command: list[str]) -> bool:
    try:
        done = subprocess.run(command, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def image_names() -> list[str]:
    prefix = os.environ.get("IMAGE_PREFIX", "localhost/modelshelf")
    tag = os.environ.get("IMAGE_TAG", "dev")
    names = [f"{prefix}/{name}:{tag}" for name in IMAGES]
    if (REPO / "images" / "mlflowserver-conda.Dockerfile").exists():
        names.append(f"{prefix}/mlflowserver-conda:{tag}")  # listed only when it was built
    return names


def size_of(tool: str, name: str) -> float | None:
    """The image's size in MB (10^6 bytes, as build.sh prints), or None when it is not built."""
    try:
        done = subprocess.run(
            [tool, *INSPECT[tool], name], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        return round(int(done.stdout.strip().splitlines()[0]) / 1e6, 1)
    except (ValueError, IndexError):
        return None


def measure() -> dict:
    """``{"tool", "images": [{"name", "size_mb" | None, "state"}], "error"?}``."""
    tool, reason = builder()
    if tool is None:
        return {"tool": None, "images": [], "error": reason}
    found = []
    for name in image_names():
        size = size_of(tool, name)
        if size is None and "mlflowserver-conda" in name:
            continue  # opt-in (MICROMAMBA_IMAGE): absent is normal
        found.append(
            {"name": name, "size_mb": size, "state": "built" if size is not None else NOT_BUILT}
        )
    return {"tool": tool, "images": found}
