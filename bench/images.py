"""Image sizes of the images ``make images`` builds, read from the local image store, and the
cold start of ``podman run`` on one (``cold_start``: the realistic set's report).

Building every image takes ~20 minutes on 2 cores, more than the whole of ``make bench`` may
take on a fresh machine, so the bench never builds: it reports the size of each image already
built and says "not built — run `make images`" for the others. The image names, the tag and the
builder are the ones ``images/build.sh`` uses (IMAGE_PREFIX, IMAGE_TAG, IMAGE_BUILDER).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable

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


# ------------------------------------------------------------------------------ cold start

#: Where ``cold_start`` mounts the model folder in the container (the parameters point there).
MODEL_MOUNT = "/mnt/models"


def image_name(name: str) -> str:
    """The full name ``make images`` gives image ``name`` (``sklearnserver``...)."""
    prefix = os.environ.get("IMAGE_PREFIX", "localhost/modelshelf")
    return f"{prefix}/{name}:{os.environ.get('IMAGE_TAG', 'dev')}"


def cold_start(
    tool: str,
    image: str,
    model_dir: str,
    parameters: list[dict],
    body: bytes,
    check: Callable[[dict], str | None],
    timeout: float = 120,
) -> float:
    """Seconds from ``podman run`` (the image as built, its own entry point) to the first
    correct prediction: what a pod's container start adds to the server's own cold start.

    The model folder is mounted read-only at ``MODEL_MOUNT``; the container shares the host's
    network (its ports are chosen free here). ``check(answer)`` says what is wrong with a 200
    answer (None when right). The container is removed whatever happens.
    """
    import httpx

    from bench.load import read_answer, request_headers
    from bench.procs import free_port

    name = f"modelshelf-bench-cold-{os.getpid()}"
    http, grpc, metrics = free_port(), free_port(), free_port()
    environment = {
        "PREDICTIVE_UNIT_PARAMETERS": json.dumps(parameters),
        "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": str(http),
        "PREDICTIVE_UNIT_GRPC_SERVICE_PORT": str(grpc),
        "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(metrics),
    }
    command = [tool, "run", "-d", "--rm", "--name", name, "--network", "host"]
    command += ["-v", f"{model_dir}:{MODEL_MOUNT}:ro"]
    for key, value in environment.items():
        command += ["-e", f"{key}={value}"]
    url = f"http://127.0.0.1:{http}/api/v1.0/predictions"
    started = time.monotonic()
    run = subprocess.run([*command, image], capture_output=True, text=True, timeout=60)
    if run.returncode != 0:  # podman's own last line says why (storage, image, port)
        lines = (run.stderr or run.stdout).strip().splitlines() or ["no output"]
        raise RuntimeError(f"{tool} run exited with {run.returncode}: {lines[-1]}")
    last = "no answer yet"
    try:
        with httpx.Client(timeout=10) as client:
            while time.monotonic() - started < timeout:
                try:
                    answer = client.post(url, content=body, headers=request_headers(body))
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                else:
                    if answer.status_code == 200:
                        wrong = check(read_answer(answer))
                        if wrong is None:
                            return time.monotonic() - started
                        last = wrong
                    else:
                        last = f"HTTP {answer.status_code}"
                time.sleep(0.01)
        raise RuntimeError(f"{image}: no correct prediction in {timeout:.0f} s ({last})")
    finally:
        subprocess.run(
            [tool, "rm", "-f", "-t", "2", name], capture_output=True, timeout=60, check=False
        )
