"""Build a vLLM image with a model's weights inside, with Cloud Build, during ``pulumi up``.

This is the tutorial's way of shipping weights (download at build time, serve offline), made
repeatable: the build runs only when its inputs change, and the result is consumed by digest.

* The build files ship with the project in ``images/vllm-baked`` (Dockerfile, cloudbuild.yaml).
* A ``command:local:Command`` runs ``gcloud builds submit`` and then prints only the pushed
  image's digest; ``image_by_digest`` is ``<repository>/<image>@<digest>``.
* ``triggers`` hold a hash of the two build files plus the model id, revision and base image,
  and the image tag is a short hash of the same, so an unchanged build is not rerun and a
  changed one gets a new tag.
* The Hugging Face token never passes through Pulumi: Cloud Build reads it from Secret Manager
  (``availableSecrets``) and hands it to the Docker build as a BuildKit secret.

Runs need ``gcloud`` (authenticated) on the machine running ``pulumi up``. The image is not
deleted on destroy; registry cleanup policies own old images.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi
import pulumi_command as command

from components.rules import hf_model_id_problem, pinned_image_problem, secret_reference_problem

TYPE_TOKEN = "llm-serving:images:ModelImageBuild"
# Earlier type tokens of this component: aliases keep existing builds from rerunning.
PREVIOUS_TYPE_TOKENS = ("llm-serving:cloudrun:ModelImageBuild",)

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # where Pulumi.yaml lives
BUILD_DIR = "images/vllm-baked"  # relative to PROJECT_ROOT
BUILD_FILES = ("Dockerfile", "cloudbuild.yaml", "cloudbuild-public.yaml")  # the last: builds without a token

_REVISION = re.compile(r"[\w./-]{1,128}")
_IMAGE_NAME = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# `gcloud builds submit --machine-type` choices (gcloud's own help text).
MACHINE_TYPES = ("e2-medium", "e2-highcpu-8", "e2-highcpu-32", "n1-highcpu-8", "n1-highcpu-32")


@dataclass(frozen=True, kw_only=True)
class ModelImageBuildArgs:
    """Inputs of ``ModelImageBuild``."""

    project: str  # project that runs the build and owns the secret
    region: str  # Cloud Build region
    repository_url: pulumi.Input[str]  # Docker repository path, <region>-docker.pkg.dev/<project>/<repo>
    image_name: str  # image name inside the repository, e.g. "vllm-gemma-3-1b-it"
    model_id: str  # Hugging Face model id, e.g. "google/gemma-3-1b-it"
    base_image: pulumi.Input[str]  # pinned vLLM image (tag or digest), e.g. via the Docker Hub remote repository
    build_service_account: pulumi.Input[str]  # the build's service account: email or projects/<p>/serviceAccounts/<email>
    # Secret Manager secret id or projects/<p>/secrets/<id> with the HF token; None for a public (not gated) model.
    hf_token: Optional[pulumi.Input[str]] = None
    model_revision: Optional[str] = None  # Hugging Face revision; a commit pins the weights (default: main)
    hf_token_version: str = "latest"  # secret version the build reads
    source_dir: str = BUILD_DIR  # directory with Dockerfile and cloudbuild.yaml, relative to the project root or absolute
    timeout_seconds: int = 3600  # whole build, download and push included
    machine_type: Optional[str] = "e2-highcpu-8"  # Cloud Build machine type; None = Cloud Build's default
    disk_size_gb: Optional[int] = None  # build disk; raise it for large models (None = Cloud Build's default)


def resolve_source_dir(source_dir: str) -> Path:
    """The build directory on this machine (relative paths start at the project root)."""
    path = Path(source_dir)
    return path if path.is_absolute() else PROJECT_ROOT / path


def build_files_hash(source_dir: str) -> str:
    """SHA-256 over the build files' names and contents, in a fixed order."""
    digest = hashlib.sha256()
    for file_name in BUILD_FILES:
        digest.update(file_name.encode() + b"\0")
        digest.update((resolve_source_dir(source_dir) / file_name).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _validate(a: ModelImageBuildArgs) -> list[str]:
    problems: list[str] = []

    def add(field_name: str, message: str) -> None:
        problems.append(f"{field_name}: {message}")

    if not a.project:
        add("project", "is empty; give the project id")
    if not a.region:
        add("region", "is empty; give the Cloud Build region, e.g. us-central1")
    if not _IMAGE_NAME.fullmatch(a.image_name or ""):
        add("image_name", f"got {a.image_name!r}; use lowercase letters, digits and . _ - separators")
    if hf_model_id_problem(a.model_id or ""):
        add("model_id", f"got {a.model_id!r}; give a Hugging Face id like org/name")
    if a.model_revision is not None and not _REVISION.fullmatch(a.model_revision):
        add("model_revision", f"got {a.model_revision!r}; give a commit hash, tag or branch")
    if isinstance(a.base_image, str):
        problem = pinned_image_problem(a.base_image)
        if problem:
            add("base_image", problem)
    if isinstance(a.hf_token, str):
        problem = secret_reference_problem(a.hf_token)
        if problem:
            add("hf_token", problem)
    if not (a.hf_token_version == "latest" or a.hf_token_version.isdigit()):
        add("hf_token_version", f"got {a.hf_token_version!r}; use 'latest' or a version number")
    missing = [f for f in BUILD_FILES if not (resolve_source_dir(a.source_dir) / f).is_file()]
    if missing:
        add("source_dir", f"{a.source_dir!r} lacks {', '.join(missing)}; point it at the shipped images/vllm-baked")
    if not 600 <= a.timeout_seconds <= 86400:
        add("timeout_seconds", f"got {a.timeout_seconds}; use 600 to 86400 (a model download plus push takes minutes)")
    if a.machine_type is not None and a.machine_type not in MACHINE_TYPES:
        add("machine_type", f"got {a.machine_type!r}; use one of {', '.join(MACHINE_TYPES)}, or None")
    if a.disk_size_gb is not None and a.disk_size_gb < 100:
        add("disk_size_gb", f"got {a.disk_size_gb}; use at least 100, or None for Cloud Build's default")
    return problems


class ModelImageBuild(pulumi.ComponentResource):
    """A vLLM image with one model's weights baked in, built by Cloud Build, exposed by digest."""

    image_by_digest: pulumi.Output[str]
    image_tag: pulumi.Output[str]
    inputs_hash: pulumi.Output[str]

    def __init__(self, name: str, args: ModelImageBuildArgs, opts: Optional[pulumi.ResourceOptions] = None):
        problems = _validate(args)
        if problems:
            raise ValueError(f"ModelImageBuild {name!r} has invalid arguments:\n  - " + "\n  - ".join(problems))
        super().__init__(TYPE_TOKEN, name, None, pulumi.ResourceOptions.merge(
            pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=old) for old in PREVIOUS_TYPE_TOKENS]), opts))

        files_hash = build_files_hash(args.source_dir)
        revision = args.model_revision or "main"
        base_image = pulumi.Output.from_input(args.base_image).apply(lambda image: _checked_base_image(name, image))

        # What the build depends on; a change in any of them means a new image.
        triggers = pulumi.Output.all(files_hash, args.model_id, revision, base_image)
        inputs_hash = triggers.apply(lambda parts: hashlib.sha256("\n".join(parts).encode()).hexdigest())
        tag = inputs_hash.apply(lambda h: h[:16])
        image_path = pulumi.Output.from_input(args.repository_url).apply(
            lambda url: f"{url.rstrip('/')}/{args.image_name}")
        tagged = pulumi.Output.all(image_path, tag).apply(lambda v: f"{v[0]}:{v[1]}")

        secret_version = (pulumi.Output.from_input(args.hf_token).apply(
            lambda s: _secret_version_name(args.project, s, args.hf_token_version))
            if args.hf_token is not None else pulumi.Output.from_input(""))
        build_sa = pulumi.Output.from_input(args.build_service_account).apply(
            lambda sa: _service_account_name(args.project, sa))
        script = pulumi.Output.all(tagged, base_image, secret_version, build_sa).apply(
            lambda v: _build_script(args, revision, image=v[0], base_image=v[1], hf_secret=v[2], build_sa=v[3]))

        build = command.local.Command(
            f"{name}-build",
            create=script,
            triggers=triggers,
            interpreter=["/bin/bash", "-c"],  # pipefail is a bash option
            # Relative to the project root, and the script uses paths relative to it: the same
            # stack run from another checkout or machine sees no change and does not rebuild.
            dir=args.source_dir,
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.inputs_hash = inputs_hash
        self.image_tag = tagged
        self.image_by_digest = pulumi.Output.all(image_path, build.stdout).apply(
            lambda v: f"{v[0]}@{_checked_digest(name, v[1])}")
        self.register_outputs({
            "image_by_digest": self.image_by_digest,
            "image_tag": self.image_tag,
            "inputs_hash": self.inputs_hash,
        })


def _secret_version_name(project: str, secret: str, version: str) -> str:
    name = secret if secret.startswith("projects/") else f"projects/{project}/secrets/{secret}"
    return f"{name}/versions/{version}"


def _service_account_name(project: str, account: str) -> str:
    """``gcloud builds submit --service-account`` takes the account's resource name."""
    return account if account.startswith("projects/") else f"projects/{project}/serviceAccounts/{account}"


def _build_script(args: ModelImageBuildArgs, revision: str, *, image: str, base_image: str,
                  hf_secret: str, build_sa: str) -> str:
    substitutions = ",".join([
        f"_MODEL_ID={args.model_id}",
        f"_MODEL_REVISION={revision}",
        f"_IMAGE={image}",
        f"_BASE_IMAGE={base_image}",
    ] + ([f"_HF_SECRET={hf_secret}"] if hf_secret else []))
    q = shlex.quote
    submit = [
        "gcloud", "builds", "submit", ".",
        "--config=cloudbuild.yaml" if hf_secret else "--config=cloudbuild-public.yaml",
        f"--region={q(args.region)}",
        f"--project={q(args.project)}",
        f"--substitutions={q(substitutions)}",
        f"--service-account={q(build_sa)}",
        f"--timeout={args.timeout_seconds}s",
    ]
    if args.machine_type:
        submit.append(f"--machine-type={q(args.machine_type)}")
    if args.disk_size_gb:
        submit.append(f"--disk-size={args.disk_size_gb}")
    submit.append("--quiet")
    describe = ["gcloud", "artifacts", "docker", "images", "describe", q(image),
                f"--project={q(args.project)}", "--format='value(image_summary.digest)'"]
    # The build's log goes to stderr: stdout carries the digest and nothing else.
    return "set -euo pipefail\n" + " ".join(submit) + " 1>&2\n" + " ".join(describe) + "\n"


def _checked_base_image(resource: str, image: str) -> str:
    problem = pinned_image_problem(image)
    if problem:
        raise ValueError(f"ModelImageBuild {resource!r} has invalid arguments:\n  - base_image: {problem}")
    return image


def _checked_digest(resource: str, stdout: str) -> str:
    digest = (stdout or "").strip()
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"ModelImageBuild {resource!r}: the build printed {digest[:80]!r} instead of an image "
                         "digest (sha256:<64 hex>); see the build log above")
    return digest
