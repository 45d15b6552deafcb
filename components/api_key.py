"""The API key a vLLM server requires, kept in Secret Manager.

Either generated here (a ``random`` password stored as a Pulumi secret in a new Secret Manager
secret version) or an existing Secret Manager secret the team manages. Consumers get the value
only as a Pulumi secret (``value``), and people get it with ``gcloud secrets versions access``
(``access_command``), so the key never appears in an argv, a plain env value or the plan.

vLLM reads the key from the ``VLLM_API_KEY`` environment variable and then requires
``Authorization: Bearer <key>`` on every path under ``/v1`` (also ``/v2``, ``/inference``,
``/cohere``); ``/health`` and ``/metrics`` stay open for probes and scrapers (vLLM 0.32
``vllm/entrypoints/serve/middleware/authenticate.py``, ``GUARDED_PREFIX``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_random as random

from components.secret_store import existing_secret_value, secret_resource_name, store_secret

TYPE_TOKEN = "llm-serving:secrets:ServingApiKey"
KEY_LENGTH = 48  # characters of [A-Za-z0-9]: about 285 bits


@dataclass(frozen=True)
class ServingApiKeyArgs:
    project: str
    region: str  # the secret's only replica
    secret_id: str  # used when the key is generated here
    labels: Mapping[str, str] = field(default_factory=dict)
    existing_secret: Optional[str] = None  # `projects/<p>/secrets/<id>` or an id in `project`
    protect: bool = False


class ServingApiKey(pulumi.ComponentResource):
    """An API key in Secret Manager and the commands to read it."""

    secret_name: pulumi.Output[str]
    secret_id: pulumi.Output[str]
    value: pulumi.Output[str]
    access_command: pulumi.Output[str]

    def __init__(self, name: str, args: ServingApiKeyArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        if not args.existing_secret and not args.secret_id:
            raise ValueError(f"ServingApiKey {name!r}: give secret_id (a key is generated) or existing_secret")

        if args.existing_secret:
            full_name = secret_resource_name(args.existing_secret, args.project)
            self.secret_name = pulumi.Output.from_input(full_name)
            self.secret_id = pulumi.Output.from_input(full_name.rsplit("/", 1)[-1])
            secret_project = full_name.split("/")[1]
            self.value = existing_secret_value(full_name, parent=self)
        else:
            password = random.RandomPassword(f"{name}-value", length=KEY_LENGTH, special=False,
                                             opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
            stored = store_secret(name, parent=self, project=args.project, region=args.region,
                                  secret_id=args.secret_id, labels=args.labels, value=password.result,
                                  protect=args.protect)
            self.value = stored.value
            self.secret_name = stored.secret.name
            self.secret_id = stored.secret.secret_id
            secret_project = args.project

        self.access_command = self.secret_id.apply(
            lambda sid: f"gcloud secrets versions access latest --secret={sid} --project={secret_project}")
        self.register_outputs({"secret_name": self.secret_name, "access_command": self.access_command})
