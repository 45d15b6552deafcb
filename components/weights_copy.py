"""The weights-copy job: one model revision copied from the Hugging Face Hub into the model bucket,
once, by the only process that reads the Hugging Face token.

Why a Cloud Run job (and not a Kubernetes Job or a Cloud Build step):

* it exists on every platform: a Cloud Run or Vertex AI stack has no cluster for a Kubernetes Job,
  and a GKE stack's copy should not wait for the cluster or hold a TPU node;
* Pulumi runs it and waits for it: ``cloudrunv2.Job.run_execution_token`` (pulumi-gcp 10.2.0:
  "A unique string used as a suffix creating a new execution upon job create or update. The Job
  will become ready when the execution is successfully completed"). The token is a hash of the
  model, revision, destination, image and the job's code, so an execution runs on create and
  again only when one of them changes, and serving (which depends on the job) is rolled out only
  after the copy is complete. A Cloud Build step would need ``gcloud`` on the deploying machine
  and a ``command:local:Command`` (as the baked image does); the job needs neither;
* the token reaches the job as a Secret Manager reference (``value_source.secret_key_ref``): never
  a Pulumi output, a plan value or a Kubernetes Secret.

What runs: ``jobs/weights_copy.py`` (exit statuses 0/1/2/3; idempotent through its
``_COMPLETE`` marker, so a rerun is a no-op) on the pinned vLLM serving image, which already
carries Python, ``huggingface_hub`` and ``google-cloud-storage`` (vLLM installs
``runai-model-streamer[gcs]`` in its images since vllm-project/vllm PR #24909, for the streamer's
GCS support). No image is built and nothing new is pinned: the job runs an image the stack already
pins (by digest in prod) and pulls through its registry. The code reaches the container as an
object in the model bucket (``jobs/weights-copy/<job>/weights_copy.py``, uploaded by Pulumi from
the repository), mounted read-only with Cloud Run's Cloud Storage volume (``only-dir``); only the
deploying identity can write there.

The job's identity (given by the caller) gets, on the bucket only: listing object names,
``roles/storage.objectViewer`` on its code's prefix and ``roles/storage.objectUser`` on the model's
prefix ``models/<org>/<name>/`` (every revision of that model, nothing else). The caller grants
``secretAccessor`` on the token's secret and ``artifactregistry.reader`` on the registry.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pulumi
import pulumi_gcp as gcp

from components.iam import scoped_bucket_member
from components.rules import gcp_labels_problems, hf_model_id_problem, pinned_image_problem

TYPE_TOKEN = "llm-serving:weights:WeightsCopyJob"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
JOB_SOURCE = PROJECT_ROOT / "jobs" / "weights_copy.py"  # shipped as it is in the repository
CODE_MOUNT = "/opt/weights-copy"
TOKEN_ENV = "HF_TOKEN"  # what jobs/weights_copy.py reads
_JOB_NAME = re.compile(r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?")  # Cloud Run job names: at most 49 here, leaving room
_REVISION = re.compile(r"[\w.-]{1,128}")


@dataclass(frozen=True, kw_only=True)
class WeightsCopyJobArgs:
    """Inputs of ``WeightsCopyJob``."""

    project: str
    region: str  # the stack's region, next to the bucket
    job_name: str  # Cloud Run job name, e.g. "llm-dev-gemma-1b-weights"
    model_id: str  # Hugging Face id, e.g. "google/gemma-3-1b-it"
    revision: str  # commit (a branch is copied once, as it is on the first run)
    bucket: pulumi.Input[str]  # model bucket name, no gs://
    prefix: str  # destination object prefix, e.g. "models/google/gemma-3-1b-it/<revision>"
    image: str  # pinned image with Python, huggingface_hub and google-cloud-storage (the vLLM serving image)
    service_account_email: pulumi.Input[str]  # the job's own identity
    hf_token_secret: Optional[pulumi.Input[str]] = None  # Secret Manager secret name; None: a public model
    labels: Mapping[str, str] = field(default_factory=dict)
    cpu: str = "4"
    memory: str = "16Gi"  # Cloud Run keeps files in memory: room for the largest file (shards are ~5 GB)
    timeout_seconds: int = 7200
    max_retries: int = 1
    depends_on: tuple[pulumi.Resource, ...] = ()  # grants the execution needs (token accessor, registry reader)


def model_root(model_id: str) -> str:
    """Every revision of a model lives under this prefix."""
    return f"models/{model_id}/"


def validate_args(a: WeightsCopyJobArgs) -> list[str]:
    problems = []
    if not _JOB_NAME.fullmatch(a.job_name):
        problems.append(f"job_name: got {a.job_name!r}; lowercase letters, digits and hyphens, starting with a "
                        "letter, at most 49 characters")
    if hf_model_id_problem(a.model_id):
        problems.append(f"model_id: got {a.model_id!r}; give a Hugging Face id like org/name")
    if not _REVISION.fullmatch(a.revision):
        problems.append(f"revision: got {a.revision!r}; give a commit hash, tag or branch")
    if not a.prefix.startswith(model_root(a.model_id)) or a.prefix.endswith("/") or ".." in a.prefix.split("/"):
        problems.append(f"prefix: got {a.prefix!r}; give {model_root(a.model_id)}<revision> (no trailing /), so the "
                        "job's write access stays on its own model")
    problem = pinned_image_problem(a.image)
    if problem:
        problems.append(f"image: {problem}")
    if not 600 <= a.timeout_seconds <= 86400:
        problems.append(f"timeout_seconds: got {a.timeout_seconds}; use 600 to 86400 (Cloud Run's task limit is 24 h)")
    if a.max_retries < 0:
        problems.append(f"max_retries: got {a.max_retries}; use 0 or more")
    problems += [f"labels: {p}" for p in gcp_labels_problems(a.labels)]
    return problems


def execution_token(a: WeightsCopyJobArgs, code_sha256: str) -> str:
    """Changes exactly when a new copy may be needed: model, revision, destination, image or code."""
    digest = hashlib.sha256("\n".join((a.model_id, a.revision, a.prefix, a.image, code_sha256)).encode()).hexdigest()
    return digest[:16]


class WeightsCopyJob(pulumi.ComponentResource):
    """A Cloud Run job that copies one model revision into the bucket, run by Pulumi on create and
    whenever the model, revision, image or code changes; ready only once the copy is complete."""

    uri: pulumi.Output[str]  # gs://<bucket>/<prefix>, where serving reads the copy

    def __init__(self, name: str, args: WeightsCopyJobArgs, opts: Optional[pulumi.ResourceOptions] = None):
        problems = validate_args(args)
        if problems:
            raise ValueError(f"WeightsCopyJob {name!r}: " + "; ".join(problems))
        super().__init__(TYPE_TOKEN, name, None, opts)

        code = JOB_SOURCE.read_bytes()
        code_sha256 = hashlib.sha256(code).hexdigest()
        code_dir = f"jobs/weights-copy/{args.job_name}"
        code_object = gcp.storage.BucketObject(
            f"{name}-code",
            bucket=args.bucket,
            name=f"{code_dir}/{JOB_SOURCE.name}",
            # Relative to the project root (Pulumi runs the program there), as the image build's directory
            # is: the same stack run from another checkout sees no change.
            source=pulumi.FileAsset(str(JOB_SOURCE.relative_to(PROJECT_ROOT))),
            content_type="text/x-python",
            opts=pulumi.ResourceOptions(parent=self),
        )
        member = pulumi.Output.concat("serviceAccount:", args.service_account_email)
        grants = [
            scoped_bucket_member(f"{name}-list", bucket=args.bucket, role="roles/storage.objectViewer", member=member,
                                 title="list-only", prefixes=None, parent=self),
            scoped_bucket_member(f"{name}-code-reader", bucket=args.bucket, role="roles/storage.objectViewer",
                                 member=member, title="own-code", prefixes=(code_dir + "/",), parent=self),
            scoped_bucket_member(f"{name}-model-writer", bucket=args.bucket, role="roles/storage.objectUser",
                                 member=member, title="own-model", prefixes=(model_root(args.model_id),), parent=self),
        ]

        env = []
        if args.hf_token_secret is not None:
            env.append(gcp.cloudrunv2.JobTemplateTemplateContainerEnvArgs(
                name=TOKEN_ENV,
                value_source=gcp.cloudrunv2.JobTemplateTemplateContainerEnvValueSourceArgs(
                    secret_key_ref=gcp.cloudrunv2.JobTemplateTemplateContainerEnvValueSourceSecretKeyRefArgs(
                        secret=args.hf_token_secret, version="latest")),
            ))
        env.append(gcp.cloudrunv2.JobTemplateTemplateContainerEnvArgs(name="GOOGLE_CLOUD_PROJECT", value=args.project))
        token = execution_token(args, code_sha256)
        self.job = gcp.cloudrunv2.Job(
            f"{name}-job",
            project=args.project,
            location=args.region,
            name=args.job_name,
            labels=dict(args.labels),
            deletion_protection=False,  # stateless: the copy lives in the bucket
            run_execution_token=token,
            template=gcp.cloudrunv2.JobTemplateArgs(
                task_count=1,
                template=gcp.cloudrunv2.JobTemplateTemplateArgs(
                    service_account=args.service_account_email,
                    max_retries=args.max_retries,
                    timeout=f"{args.timeout_seconds}s",
                    execution_environment="EXECUTION_ENVIRONMENT_GEN2",  # Cloud Storage volumes need gen2
                    containers=[gcp.cloudrunv2.JobTemplateTemplateContainerArgs(
                        image=args.image,
                        commands=["python3", f"{CODE_MOUNT}/{JOB_SOURCE.name}"],
                        args=["--repo", args.model_id, "--revision", args.revision,
                              "--bucket", args.bucket, "--prefix", args.prefix],
                        envs=env,
                        resources=gcp.cloudrunv2.JobTemplateTemplateContainerResourcesArgs(
                            limits={"cpu": args.cpu, "memory": args.memory}),
                        volume_mounts=[gcp.cloudrunv2.JobTemplateTemplateContainerVolumeMountArgs(
                            name="code", mount_path=CODE_MOUNT)],
                    )],
                    volumes=[gcp.cloudrunv2.JobTemplateTemplateVolumeArgs(
                        name="code",
                        gcs=gcp.cloudrunv2.JobTemplateTemplateVolumeGcsArgs(
                            bucket=args.bucket, read_only=True, mount_options=[f"only-dir={code_dir}"]),
                    )],
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[code_object, *grants, *args.depends_on],
                                        custom_timeouts=pulumi.CustomTimeouts(
                                            create=f"{args.timeout_seconds // 60 + 10}m",
                                            update=f"{args.timeout_seconds // 60 + 10}m")),
        )
        self.execution_token = token
        self.uri = pulumi.Output.concat("gs://", args.bucket, "/", args.prefix)
        self.job_name = self.job.name
        self.register_outputs({"uri": self.uri, "job_name": self.job_name, "execution_token": token})
