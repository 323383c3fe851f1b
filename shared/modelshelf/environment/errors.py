"""Errors of the environment builder: each names the file or requirement and what went wrong."""

from __future__ import annotations

from modelshelf.errors import ModelshelfError


class EnvironmentSpecError(ModelshelfError):
    """A model's environment file (MLmodel, conda.yaml, python_env.yaml…) cannot be read."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot read the model's environment from {path}: {reason}")


class EnvironmentBuildError(ModelshelfError):
    """Installing the model's requirements failed, or a strict check refused the plan."""

    def __init__(self, requirements: list[str], reason: str) -> None:
        self.requirements = requirements
        self.reason = reason
        asked = ", ".join(requirements) if requirements else "the model's requirements"
        super().__init__(f"cannot install {asked}: {reason}")
