"""Rules that more than one layer checks: names and ids, labels, pinned images, public
principals and token shapes. Each has one home, here, with the public source it follows.

The stack config (``stacks/config.py``), the components and the policy pack all ask these
functions, so a value the config accepts is a value the components and the cloud accept too.
The policy pack runs in its own environment and keeps a byte-identical copy
(``policies/rules.py``; a test compares the two), so this module imports the standard library
only.

Functions named ``*_problem`` return None for a good value, or what is wrong and what is
allowed (starting with ``got <value>``), for the caller to prefix with the key or field it
checked. Nothing here ever echoes a value that looks like a credential.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Optional

# ---------------------------------------------------------------------------
# Public principals.
# https://cloud.google.com/iam/docs/principals-overview#all-users and #all-authenticated-users

PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
# Principal identifiers in IAM allow policies (https://cloud.google.com/iam/docs/principal-identifiers).
MEMBER_PREFIXES = ("user:", "group:", "serviceAccount:", "domain:", "principal:", "principalSet:")


def is_public_member(member: object) -> bool:
    """Does granting ``member`` a role open the resource to anyone (signed in or not)?"""
    return isinstance(member, str) and member.strip() in PUBLIC_MEMBERS


def member_problem(member: str) -> Optional[str]:
    """Why ``member`` is not an IAM principal identifier, or None."""
    if member in PUBLIC_MEMBERS or (member.startswith(MEMBER_PREFIXES) and member.split(":", 1)[1]):
        return None
    return (f"got {member!r}; an IAM member looks like user:a@example.com, group:..., serviceAccount:..., "
            "domain:..., principal:... or principalSet:...")


# ---------------------------------------------------------------------------
# Token shapes. Hugging Face user access tokens start with `hf_`
# (https://huggingface.co/docs/hub/security-tokens); Google OAuth access tokens with `ya29.`
# (https://cloud.google.com/docs/authentication/token-types#access); OpenAI-style keys with `sk-`.

HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")
_CREDENTIAL = re.compile(r"hf_[A-Za-z0-9]{20,}|ya29\.[\w.-]{10,}|sk-[A-Za-z0-9_-]{20,}")


def looks_like_token(text: object) -> bool:
    """Does ``text`` hold something shaped like a credential anywhere in it? Never echo it."""
    return isinstance(text, str) and _CREDENTIAL.search(text) is not None


# ---------------------------------------------------------------------------
# Pinned images: a release tag or a digest, never `latest` or no tag.
# https://cloud.google.com/artifact-registry/docs/docker/names (tags and digests)

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def pinned_image_problem(image: str) -> Optional[str]:
    """Why ``image`` is not pinned to a release tag or a digest, or None when it is."""
    name, _, digest = (image or "").partition("@")
    if not name:
        return "is empty; give the serving image with a release tag or a digest"
    if digest:
        return None if _DIGEST.fullmatch(digest) else f"got {image!r}; a digest must be sha256: followed by 64 hex digits"
    last = name.rsplit("/", 1)[-1]  # a registry port (host:5000/...) is not a tag
    tag = last.partition(":")[2]
    if not tag:
        return f"got {image!r} without a tag; pin a release tag (e.g. :v0.32.0) or a digest (@sha256:...)"
    if tag == "latest":
        return f"got {image!r}; `latest` moves under you, pin a release tag or a digest"
    return None


# ---------------------------------------------------------------------------
# Cloud Storage bucket names. https://cloud.google.com/storage/docs/buckets#naming

BUCKET_NAME_MAX = 63  # without dots; names with dots may reach 222, 63 per dot-separated part
_BUCKET_CHARS = re.compile(r"[a-z0-9][a-z0-9._-]*[a-z0-9]")
_GOOGLE_LIKE = re.compile(r"g[o0][o0]g[l1]e")


def bucket_name_problem(name: str) -> Optional[str]:
    """Why ``name`` is not a valid Cloud Storage bucket name, or None."""
    limit = 222 if "." in name else BUCKET_NAME_MAX
    if not 3 <= len(name) <= limit:
        return f"got {name!r} ({len(name)} characters); bucket names are 3-{limit} characters"
    if not _BUCKET_CHARS.fullmatch(name):
        return (f"got {name!r}; bucket names use lowercase letters, digits, dots, hyphens and underscores, "
                "and start and end with a letter or digit")
    if any(not part or len(part) > 63 for part in name.split(".")):
        return f"got {name!r}; each dot-separated part of a bucket name is 1-63 characters (no `..`)"
    if name.startswith("goog"):
        return f"got {name!r}; bucket names cannot begin with `goog`"
    if _GOOGLE_LIKE.search(name):
        return f"got {name!r}; bucket names cannot contain `google` or a close misspelling of it"
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return None
    return f"got {name!r}; a bucket name cannot be an IP address"


# Soft-delete retention: 0 turns it off, otherwise 7 to 90 days.
# https://cloud.google.com/storage/docs/soft-delete#retention-duration

SOFT_DELETE_DAYS_MIN, SOFT_DELETE_DAYS_MAX = 7, 90


def soft_delete_days_problem(days: int) -> Optional[str]:
    if days == 0 or SOFT_DELETE_DAYS_MIN <= days <= SOFT_DELETE_DAYS_MAX:
        return None
    return (f"got {days}; Cloud Storage keeps soft-deleted objects for 0 days (off) or "
            f"{SOFT_DELETE_DAYS_MIN}-{SOFT_DELETE_DAYS_MAX} days")


# ---------------------------------------------------------------------------
# Service account ids (the part before @): 6-30 characters, RFC 1035.
# https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/create (accountId)

SERVICE_ACCOUNT_ID = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])")
SERVICE_ACCOUNT_ID_MIN, SERVICE_ACCOUNT_ID_MAX = 6, 30


def service_account_id_problem(account_id: str) -> Optional[str]:
    if not SERVICE_ACCOUNT_ID_MIN <= len(account_id) <= SERVICE_ACCOUNT_ID_MAX:
        return (f"got {account_id!r} ({len(account_id)} characters); a service account id is "
                f"{SERVICE_ACCOUNT_ID_MIN}-{SERVICE_ACCOUNT_ID_MAX} characters")
    if not SERVICE_ACCOUNT_ID.fullmatch(account_id):
        return (f"got {account_id!r}; a service account id uses lowercase letters, digits and hyphens, "
                "starts with a letter and ends with a letter or digit")
    return None


# ---------------------------------------------------------------------------
# Project ids. https://cloud.google.com/resource-manager/docs/creating-managing-projects#before_you_begin

PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")


def project_id_problem(project: str) -> Optional[str]:
    if PROJECT_ID.fullmatch(project) and "google" not in project:
        return None
    return (f"got {project!r}; a project id is 6-30 lowercase letters, digits or hyphens, starting with a letter "
            "and not ending with a hyphen")


# ---------------------------------------------------------------------------
# Secret Manager secret ids: up to 255 letters, digits, `-` and `_`; or a full resource name.
# https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets/create (secretId)

SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
SECRET_REFERENCE = re.compile(r"(projects/[a-z0-9-]+/secrets/)?[A-Za-z0-9_-]{1,255}")


def secret_reference_problem(value: str) -> Optional[str]:
    """A secret id or ``projects/<p>/secrets/<id>``; a token pasted here is refused unseen."""
    if looks_like_token(value):
        return ("holds what looks like a literal token, not the name of a secret (the value is not shown); "
                "give the Secret Manager secret's id or projects/<project>/secrets/<id>")
    if SECRET_REFERENCE.fullmatch(value):
        return None
    return (f"got {value!r}; give a secret id (up to 255 letters, digits, - and _) or "
            "projects/<project>/secrets/<id>, never the token itself")


# ---------------------------------------------------------------------------
# Artifact Registry repository ids.
# https://cloud.google.com/artifact-registry/docs/repositories/create-repos (repository naming)

REPOSITORY_ID = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")


def repository_id_problem(repository_id: str) -> Optional[str]:
    if REPOSITORY_ID.fullmatch(repository_id):
        return None
    return (f"got {repository_id!r}; a repository id is 1-63 lowercase letters, digits and hyphens, "
            "starting with a letter and ending with a letter or digit")


# ---------------------------------------------------------------------------
# Hugging Face model ids: `namespace/name`, each part letters, digits, `-`, `_`, `.`, at most 96
# characters, not starting or ending with `-` or `.`, no `--` or `..`.
# https://huggingface.co/docs/huggingface_hub/package_reference/utilities#huggingface_hub.utils.validate_repo_id

HF_MODEL_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_HF_PART = re.compile(r"[A-Za-z0-9_]([\w.-]{0,94}[A-Za-z0-9_])?")


def hf_model_id_problem(model_id: str) -> Optional[str]:
    parts = model_id.split("/")
    if (len(parts) == 2 and all(_HF_PART.fullmatch(p) for p in parts)
            and "--" not in model_id and ".." not in model_id):
        return None
    return f"got {model_id!r}; give a Hugging Face id like meta-llama/Llama-3.1-8B-Instruct (org/name)"


# ---------------------------------------------------------------------------
# Google Cloud labels: keys 1-63 characters starting with a lowercase letter; values 0-63; both
# lowercase letters, digits, `_` and `-` (this project keeps to ASCII); at most 64 per resource.
# https://cloud.google.com/resource-manager/docs/labels-overview#requirements

GCP_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
GCP_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
GCP_LABELS_MAX = 64


def gcp_label_problem(key: str, value: object) -> Optional[str]:
    """Why ``key: value`` is not a Google Cloud label, or None. A token-shaped value is never echoed."""
    if not GCP_LABEL_KEY.fullmatch(key):
        return (f"label key {key!r} is not allowed; keys are 1-63 lowercase letters, digits, _ and -, "
                "starting with a lowercase letter")
    if not isinstance(value, str):
        return f"label {key!r} has a {type(value).__name__} value; label values are strings"
    if looks_like_token(value):
        return f"label {key!r} holds what looks like a token; labels are public metadata, remove it"
    if not GCP_LABEL_VALUE.fullmatch(value):
        return (f"label {key}: got {value!r}; values are 0-63 lowercase letters, digits, _ and - "
                f"(e.g. {_label_suggestion(value)!r})")
    return None


def gcp_labels_problems(labels: Mapping[str, object]) -> list[str]:
    problems = [p for p in (gcp_label_problem(str(k), v) for k, v in labels.items()) if p]
    if len(labels) > GCP_LABELS_MAX:
        problems.append(f"{len(labels)} labels; a resource takes at most {GCP_LABELS_MAX}")
    return problems


def _label_suggestion(value: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", value.lower()).strip("-")[:63]


# ---------------------------------------------------------------------------
# Kubernetes names and labels.
# DNS-1123 labels: https://kubernetes.io/docs/concepts/overview/working-with-objects/names/#dns-label-names
# Label syntax: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
# Reserved namespaces: https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/#initial-namespaces

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
K8S_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
K8S_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def dns_label_problem(name: str) -> Optional[str]:
    if DNS_LABEL.fullmatch(name):
        return None
    return (f"got {name!r} ({len(name)} characters); use a DNS-1123 label: at most 63 lowercase letters, "
            "digits and hyphens, starting and ending with a letter or digit")


def k8s_label_problem(key: str, value: object) -> Optional[str]:
    if not K8S_LABEL_KEY.fullmatch(key) or len(key.rpartition("/")[0]) > 253:
        return f"label key {key!r} is not a Kubernetes label key ([prefix/]name, name up to 63 characters)"
    if not isinstance(value, str) or not K8S_LABEL_VALUE.fullmatch(value):
        return (f"label {key}: got {value!r}; Kubernetes label values are up to 63 letters, digits, "
                "-, _ and ., starting and ending with a letter or digit")
    return None


# ---------------------------------------------------------------------------
# Regions and zones (the shape only; which exist and what they offer is catalog data).
# https://cloud.google.com/compute/docs/regions-zones

REGION = re.compile(r"[a-z]+-[a-z]+\d+")
ZONE = re.compile(r"[a-z]+-[a-z]+\d+-[a-z]")


# ---------------------------------------------------------------------------
# GKE versions as GKE takes them: `1.33`, `1.33.5` or `1.33.5-gke.1080000`; a missing part
# means the newest of that prefix. TPU Trillium (v6e) needs 1.31.2-gke.1115000 or later (GKE
# tutorial "Serve an LLM using TPU Trillium on GKE with vLLM", cluster creation:
# https://cloud.google.com/kubernetes-engine/docs/tutorials/serve-vllm-tpu).

GKE_VERSION = re.compile(r"1\.(\d{1,3})(?:\.(\d{1,3})(?:-gke\.(\d{1,10}))?)?")
TPU_V6E_MIN_GKE_VERSION = "1.31.2-gke.1115000"


def gke_version_key(version: str) -> Optional[tuple[float, float, float]]:
    """'1.31.2-gke.1115000' -> (31, 2, 1115000); '1.33' -> (33, inf, inf); None when malformed."""
    match = GKE_VERSION.fullmatch(version)
    if not match:
        return None
    minor, patch, gke = match.groups()
    inf = float("inf")
    return (int(minor), int(patch) if patch is not None else inf, int(gke) if gke is not None else inf)


def gke_floor_problem(version: str, needed: str, why: str) -> Optional[str]:
    """Why ``version`` as a lowest control-plane version is below ``needed`` (for ``why``), or None."""
    key, floor = gke_version_key(version), gke_version_key(needed)
    if key is None:
        return f"got {version!r}; give a GKE version such as 1.33, 1.33.5 or 1.33.5-gke.1080000"
    if floor is not None and key < floor:
        return f"got {version!r}, below {needed}, the first GKE version with {why}; raise it or leave it unset"
    return None
