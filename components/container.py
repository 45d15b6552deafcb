"""The serving container: what one model server runs, the same for every platform.

The program decides every field once (``stacks.resolve``) and hands the whole value to the
Cloud Run, Vertex AI or GKE component unchanged. Components place it (ports, probes,
environment) and never read settings back out of ``args``: the port the server listens on,
the health path and the served model name are fields here, rendered into ``args`` by the same
code that filled them in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Optional

import pulumi

from components.rules import pinned_image_problem

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, kw_only=True)
class ServingContainer:
    """One vLLM server container."""

    image: pulumi.Input[str]  # pinned by release tag or digest (never :latest)
    command: tuple[str, ...]  # entrypoint, e.g. ("python3", "-m", "vllm.entrypoints.openai.api_server")
    args: tuple[str, ...]  # server flags, already rendered for the pinned vLLM (``--port`` equals ``port``)
    port: int  # the port the server listens on and the platform sends traffic to
    health_path: str  # HTTP path that answers 200 once the model is loaded, e.g. /health
    served_model_name: str  # the name clients send as `model`
    # Plain environment, in the order the container gets it; never credentials (each component
    # takes the Hugging Face token as its own `hf_token` input).
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    predict_route: Optional[str] = None  # Vertex AI: where predict requests go, e.g. /generate

    @property
    def argv(self) -> list[str]:
        return [*self.command, *self.args]

    def problems(self) -> list[str]:
        """What no platform would run, each naming the field, the value and the fix."""
        found = []
        if isinstance(self.image, str):
            problem = pinned_image_problem(self.image)
            if problem:
                found.append(f"container.image: {problem}")
        if not self.command:
            found.append("container.command: is empty; give the server entrypoint, "
                         "e.g. python3 -m vllm.entrypoints.openai.api_server")
        for name, values in (("command", self.command), ("args", self.args)):
            bad = [v for v in values if not isinstance(v, str)]
            if bad:
                found.append(f"container.{name}: holds non-text values {bad!r}; render every entry as a plain string")
        if not 1 <= self.port <= 65535:
            found.append(f"container.port: got {self.port}; use 1-65535")
        for name, route in (("health_path", self.health_path), ("predict_route", self.predict_route)):
            if route is not None and not route.startswith("/"):
                found.append(f"container.{name}: got {route!r}; give a path starting with /, e.g. /health")
        if not self.served_model_name:
            found.append("container.served_model_name: is empty; give the name clients put in `model`")
        for key, value in self.env.items():
            if not ENV_NAME.fullmatch(key):
                found.append(f"container.env.{key}: is not a variable name; use letters, digits and _")
            if not isinstance(value, str):
                found.append(f"container.env.{key}: got a {type(value).__name__}; plain environment takes strings only")
        return found
