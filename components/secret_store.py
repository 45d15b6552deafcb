"""One home for a Secret Manager secret that holds a Pulumi secret value, or a reference to one.

Both the Hugging Face token (``hf_token.py``) and the serving API key (``api_key.py``) either
create a secret with one version from a Pulumi secret, or read an existing secret the team
manages. These functions register their resources under the caller's component (``parent``),
with the names the callers always used (``<name>-secret``, ``<name>-version``), so moving the
code here changed no URN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp


@dataclass(frozen=True)
class StoredSecret:
    """What a caller needs from a secret it created: the secret, its version, the value (secret)."""

    secret: gcp.secretmanager.Secret
    version: gcp.secretmanager.SecretVersion
    value: pulumi.Output[str]


def store_secret(
    name: str,
    *,
    parent: pulumi.Resource,
    project: str,
    region: str,
    secret_id: str,
    labels: Mapping[str, str],
    value: pulumi.Input[str],
    protect: bool,
) -> StoredSecret:
    """A secret replicated in ``region`` only, and one version holding ``value`` as a Pulumi secret.

    ``protect`` sets both Pulumi's ``protect`` and the provider's deletion protection, so a
    protected stack can neither delete the secret by accident nor lose the version under it.
    """
    options = pulumi.ResourceOptions(parent=parent, protect=protect)
    secret = gcp.secretmanager.Secret(
        f"{name}-secret",
        project=project,
        secret_id=secret_id,
        replication={"user_managed": {"replicas": [{"location": region}]}},
        labels=dict(labels),
        deletion_protection=protect,
        opts=options,
    )
    secret_value = pulumi.Output.secret(value)
    version = gcp.secretmanager.SecretVersion(f"{name}-version", secret=secret.id, secret_data=secret_value,
                                              opts=options)
    return StoredSecret(secret=secret, version=version, value=secret_value)


def secret_resource_name(existing: str, project: str) -> str:
    """``projects/<p>/secrets/<id>`` for a full name (unchanged) or an id in ``project``."""
    return existing if existing.startswith("projects/") else f"projects/{project}/secrets/{existing}"


def existing_secret_value(full_name: str, *, parent: pulumi.Resource) -> pulumi.Output[str]:
    """The latest version of an existing secret, read at deploy time, only ever as a Pulumi secret."""
    access = gcp.secretmanager.get_secret_version_access_output(
        secret=full_name, opts=pulumi.InvokeOutputOptions(parent=parent))
    return pulumi.Output.secret(access.secret_data)
