"""The foundation components under the mock engine: project APIs, workload service accounts, the
model bucket, the Hugging Face token and Artifact Registry. Every assertion reads what the
component registered (wire inputs, secrets still wrapped) or exported, and names the resource."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pytest

from components.hf_token import ACCESSOR, HuggingFaceToken, HuggingFaceTokenArgs
from components.iam import Grant
from components.model_bucket import ModelBucket, ModelBucketArgs
from components.project_apis import ProjectApis, ProjectApisArgs
from components.registry import ArtifactRegistry, ArtifactRegistryArgs
from components.service_account import WorkloadServiceAccount, WorkloadServiceAccountArgs
from offline.mocks import CloudMocks, RecordingMonitor, is_wrapped_secret, unwrap_secrets
from offline.runner import RunResult, run_under_mocks

PROJECT = "mock-project"
REGION = "us-central1"
LABELS = {"managed-by": "pulumi", "app": "llm-serving", "environment": "test"}
MEMBER_A = "serviceAccount:a-runtime@mock-project.iam.gserviceaccount.com"
MEMBER_B = "serviceAccount:b-builder@mock-project.iam.gserviceaccount.com"

SERVICE = "gcp:projects/service:Service"
ACCOUNT = "gcp:serviceaccount/account:Account"
PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"
BUCKET = "gcp:storage/bucket:Bucket"
BUCKET_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
SECRET = "gcp:secretmanager/secret:Secret"
SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
SECRET_MEMBER = "gcp:secretmanager/secretIamMember:SecretIamMember"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
REPOSITORY_MEMBER = "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"


@pytest.fixture
def protect_flags(monkeypatch) -> dict[str, bool]:
    """Resource name -> the `protect` option the SDK sent with its registration.

    ``protect`` is a resource option, not an input: the mocks' MockResourceArgs does not carry
    it, but the RegisterResourceRequest the monitor receives does. This wraps the recording
    monitor's RegisterResource for the duration of one test to read it from the wire."""
    flags: dict[str, bool] = {}
    original = RecordingMonitor.RegisterResource

    def recording(self, request):
        flags[request.name] = bool(request.protect)
        return original(self, request)

    monkeypatch.setattr(RecordingMonitor, "RegisterResource", recording)
    return flags


def run(program, **kwargs) -> RunResult:
    return run_under_mocks(program, mocks=kwargs.pop("mocks", None) or CloudMocks(project=PROJECT, region=REGION),
                           **kwargs)


def inputs_of(result: RunResult, name: str) -> dict[str, Any]:
    return dict(result.named(name).inputs)


def names_of(result: RunResult, type_token: str) -> list[str]:
    return sorted(r.name for r in result.of_type(type_token))


def assert_additive_iam_only(result: RunResult) -> None:
    for r in result.registrations:
        lowered = r.type.lower()
        assert "iambinding" not in lowered and "iampolicy" not in lowered, \
            f"{r.name}: registers authoritative IAM type {r.type}; only ...IAMMember is allowed"


def assert_parented(result: RunResult, component: str, children: list[str]) -> None:
    parent = result.named(component)
    for child in children:
        assert result.named(child).parent == parent.urn, f"{child}: not parented to {component}"


# ---------------------------------------------------------------------------
# ProjectApis


def test_project_apis_enable_exactly_the_listed_services_and_leave_them_on_destroy():
    services = ("run.googleapis.com", "secretmanager.googleapis.com", "storage.googleapis.com")

    def program():
        apis = ProjectApis("apis", ProjectApisArgs(project=PROJECT, services=services))
        pulumi.export("enabled", apis.enabled)

    result = run(program)
    registered = result.of_type(SERVICE)
    assert sorted(r.inputs["service"] for r in registered) == sorted(services), \
        f"apis: enabled {[r.inputs['service'] for r in registered]}, expected exactly {services}"
    for r in registered:
        assert r.inputs["disableOnDestroy"] is False, f"{r.name}: disableOnDestroy {r.inputs.get('disableOnDestroy')}"
        assert r.inputs["disableDependentServices"] is False, f"{r.name}: disableDependentServices is not False"
        assert r.inputs["project"] == PROJECT, f"{r.name}: project {r.inputs.get('project')}"
    assert names_of(result, SERVICE) == ["apis-run", "apis-secretmanager", "apis-storage"]
    assert_parented(result, "apis", names_of(result, SERVICE))
    assert result.outputs["enabled"].value == sorted(services)


def test_project_apis_reject_a_duplicate_service():
    def program():
        ProjectApis("apis", ProjectApisArgs(project=PROJECT, services=("run.googleapis.com", "run.googleapis.com")))

    with pytest.raises(ValueError, match=r"ProjectApis apis: services lists an API twice"):
        run(program)


def test_dependants_of_project_apis_wait_for_every_service():
    services = ("iam.googleapis.com", "storage.googleapis.com")

    def program():
        apis = ProjectApis("apis", ProjectApisArgs(project=PROJECT, services=services))
        gcp.storage.Bucket("dependant", name="b", location="US", opts=pulumi.ResourceOptions(depends_on=[apis]))

    result = run(program)
    service_urns = {r.urn for r in result.of_type(SERVICE)}
    assert len(service_urns) == 2
    deps = set(result.named("dependant").dependencies)
    assert service_urns <= deps, f"dependant: waits for {sorted(deps)}, not for every API {sorted(service_urns)}"


# ---------------------------------------------------------------------------
# WorkloadServiceAccount


def test_service_account_registers_one_account_and_a_ready_member():
    def program():
        sa = WorkloadServiceAccount("llm-dev-gemma", WorkloadServiceAccountArgs(
            project=PROJECT, account_id="llm-dev-gemma", display_name="vLLM gemma", description="Serves gemma"))
        pulumi.export("email", sa.email)
        pulumi.export("member", sa.member)

    result = run(program)
    accounts = result.of_type(ACCOUNT)
    assert [a.name for a in accounts] == ["llm-dev-gemma-sa"], f"accounts: {[a.name for a in accounts]}"
    account = accounts[0].inputs
    assert account["accountId"] == "llm-dev-gemma", f"llm-dev-gemma-sa: accountId {account.get('accountId')}"
    assert account["project"] == PROJECT and account["displayName"] == "vLLM gemma", f"llm-dev-gemma-sa: {account}"
    assert account["description"] == "Serves gemma", f"llm-dev-gemma-sa: description {account.get('description')}"
    email = "llm-dev-gemma@mock-project.iam.gserviceaccount.com"
    assert result.outputs["email"].value == email
    assert result.outputs["member"].value == f"serviceAccount:{email}", \
        f"llm-dev-gemma: member output {result.outputs['member'].value!r}"
    assert result.of_type(PROJECT_MEMBER) == [], "llm-dev-gemma: project roles granted though none were asked"
    assert_parented(result, "llm-dev-gemma", ["llm-dev-gemma-sa"])


def test_service_account_project_roles_are_additive_members():
    def program():
        WorkloadServiceAccount("builder", WorkloadServiceAccountArgs(
            project=PROJECT, account_id="llm-dev-gemma-bld", display_name="build",
            project_roles=("roles/logging.logWriter",)))

    result = run(program)
    grant = inputs_of(result, "builder-logging-logwriter")
    assert result.named("builder-logging-logwriter").type == PROJECT_MEMBER
    assert grant["role"] == "roles/logging.logWriter", f"builder-logging-logwriter: role {grant.get('role')}"
    assert grant["member"] == "serviceAccount:llm-dev-gemma-bld@mock-project.iam.gserviceaccount.com", \
        f"builder-logging-logwriter: member {grant.get('member')}"
    assert_additive_iam_only(result)


@pytest.mark.parametrize("account_id", [
    "short",  # 5 characters
    "a" * 31,  # too long
    "Llm-dev-gemma",  # uppercase
    "1lm-dev-gemma",  # starts with a digit
    "llm-dev-gemma-",  # ends with a hyphen
    "llm_dev_gemma",  # underscores
])
def test_service_account_rejects_an_invalid_account_id(account_id: str):
    def program():
        WorkloadServiceAccount("bad", WorkloadServiceAccountArgs(project=PROJECT, account_id=account_id, display_name="x"))

    with pytest.raises(ValueError, match=r"WorkloadServiceAccount bad: account_id got .*; shorten"):
        run(program)


@pytest.mark.parametrize("account_id", ["abcdef", "a" * 30, "llm-prod-gemma-1b-bld"])
def test_service_account_accepts_valid_account_ids(account_id: str):
    def program():
        WorkloadServiceAccount("ok", WorkloadServiceAccountArgs(project=PROJECT, account_id=account_id, display_name="x"))

    assert inputs_of(run(program), "ok-sa")["accountId"] == account_id


# ---------------------------------------------------------------------------
# ModelBucket


def bucket_args(**changes: Any) -> ModelBucketArgs:
    base = dict(project=PROJECT, bucket_name="mock-project-llm-dev-models", location=REGION, labels=LABELS)
    return ModelBucketArgs(**{**base, **changes})


def run_bucket(args: ModelBucketArgs, **kwargs) -> RunResult:
    def program():
        bucket = ModelBucket("models", args)
        pulumi.export("name", bucket.name)
        pulumi.export("url", bucket.url)

    return run(program, **kwargs)


def test_bucket_is_private_regional_and_labelled():
    result = run_bucket(bucket_args())
    b = inputs_of(result, "models-bucket")
    where = "models-bucket"
    assert result.named(where).type == BUCKET
    assert b["name"] == "mock-project-llm-dev-models" and b["project"] == PROJECT, f"{where}: {b.get('name')}"
    assert b["location"] == "US-CENTRAL1", f"{where}: location {b.get('location')} is not the stack's region"
    assert b["uniformBucketLevelAccess"] is True, f"{where}: uniform bucket-level access is off"
    assert b["publicAccessPrevention"] == "enforced", f"{where}: publicAccessPrevention {b.get('publicAccessPrevention')}"
    assert b["labels"] == LABELS, f"{where}: labels {b.get('labels')}"
    assert b["forceDestroy"] is False, f"{where}: forceDestroy defaults to {b.get('forceDestroy')}"
    assert b["versioning"] == {"enabled": False}, f"{where}: versioning {b.get('versioning')}"
    assert b["softDeletePolicy"] == {"retentionDurationSeconds": 7 * 86400}, f"{where}: {b.get('softDeletePolicy')}"
    assert result.outputs["name"].value == "mock-project-llm-dev-models"
    assert result.outputs["url"].value == "gs://mock-project-llm-dev-models"
    assert result.of_type(BUCKET_MEMBER) == [], f"{where}: grants registered though none were asked"


def test_bucket_settings_follow_args():
    result = run_bucket(bucket_args(force_destroy=True, versioning=True, soft_delete_days=0))
    b = inputs_of(result, "models-bucket")
    assert b["forceDestroy"] is True, "models-bucket: force_destroy=True did not reach forceDestroy"
    assert b["versioning"] == {"enabled": True}, f"models-bucket: versioning {b.get('versioning')}"
    assert b["softDeletePolicy"] == {"retentionDurationSeconds": 0}, f"models-bucket: {b.get('softDeletePolicy')}"


@pytest.mark.parametrize("protect", [True, False])
def test_bucket_protect_option_is_honoured(protect_flags, protect: bool):
    run_bucket(bucket_args(protect=protect))
    assert protect_flags["models-bucket"] is protect, \
        f"models-bucket: registered with protect={protect_flags['models-bucket']}, Args said {protect}"
    assert protect_flags["models"] is False, "models: the component itself should not be protected"


def test_bucket_grants_are_members_on_this_bucket_with_stable_names():
    grants = {"llama": Grant("roles/storage.objectViewer", MEMBER_A),
              "gemma-build": Grant("roles/storage.objectUser", MEMBER_B)}
    result = run_bucket(bucket_args(grants=grants))
    expected = ["models-gemma-build-storage-objectuser", "models-llama-storage-objectviewer"]
    assert names_of(result, BUCKET_MEMBER) == expected, f"bucket grants: {names_of(result, BUCKET_MEMBER)}"
    viewer = inputs_of(result, "models-llama-storage-objectviewer")
    assert viewer == {"bucket": "mock-project-llm-dev-models", "role": "roles/storage.objectViewer", "member": MEMBER_A}, \
        f"models-llama-storage-objectviewer: {viewer}"
    assert_parented(result, "models", expected)
    assert_additive_iam_only(result)

    reordered = run_bucket(bucket_args(grants=dict(reversed(list(grants.items())))))
    assert names_of(reordered, BUCKET_MEMBER) == expected, "bucket grant names depend on the order of the grants"


@pytest.mark.parametrize(("changes", "message"), [
    (dict(force_destroy=True, protect=True), "force_destroy and protect contradict"),
    (dict(soft_delete_days=3), "soft_delete_days: got 3"),
    (dict(grants={"x": Grant("storage.objectViewer", MEMBER_A)}), "must be a predefined role"),
    (dict(grants={"x": Grant("roles/storage.objectViewer", "allUsers")}), "would make the resource public"),
    (dict(grants={"bad key": Grant("roles/storage.objectViewer", MEMBER_A)}), "letters, digits and hyphens"),
])
def test_bucket_rejects_bad_args(changes: dict, message: str):
    with pytest.raises(ValueError, match=r"ModelBucket models: .*" + message):
        run_bucket(bucket_args(**changes))


# ---------------------------------------------------------------------------
# HuggingFaceToken

CANARY = "hf_componentCanary_7f3a9c1e2b"


def token_args(**changes: Any) -> HuggingFaceTokenArgs:
    base = dict(project=PROJECT, region=REGION, labels=LABELS, secret_id="llm-dev-hf-token")
    return HuggingFaceTokenArgs(**{**base, **changes})


def run_token(args: HuggingFaceTokenArgs, **kwargs) -> RunResult:
    def program():
        token = HuggingFaceToken("hf", args)
        pulumi.export("secret_name", token.secret_name)
        pulumi.export("secret_id", token.secret_id)
        pulumi.export("value", token.value)

    return run(program, **kwargs)


def find_text(value: Any, needle: str, path: str = "") -> list[str]:
    """Paths under ``value`` where ``needle`` occurs in plain (unwrapped) text."""
    if is_wrapped_secret(value):
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in find_text(v, needle, f"{path}.{k}" if path else str(k))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in find_text(v, needle, f"{path}[{i}]")]
    return [path or "(value)"] if needle in str(value) else []


def test_token_created_as_secret_and_version_with_the_value_wrapped():
    result = run_token(token_args(token=pulumi.Output.secret(CANARY)))
    secret = inputs_of(result, "hf-secret")
    where = "hf-secret"
    assert result.named(where).type == SECRET
    assert secret["secretId"] == "llm-dev-hf-token" and secret["project"] == PROJECT, f"{where}: {secret}"
    assert secret["replication"] == {"userManaged": {"replicas": [{"location": REGION}]}}, \
        f"{where}: replication {secret.get('replication')} does not keep the token in the stack's region"
    assert secret["labels"] == LABELS, f"{where}: labels {secret.get('labels')}"
    assert secret["deletionProtection"] is False, f"{where}: deletionProtection {secret.get('deletionProtection')}"

    version = result.named("hf-version")
    assert version.type == SECRET_VERSION
    data = version.inputs["secretData"]
    assert is_wrapped_secret(data), f"hf-version: secretData is not registered as a secret: {type(data)}"
    assert unwrap_secrets(data) == CANARY, "hf-version: secretData does not carry the token"
    assert version.inputs["secret"] == f"projects/{PROJECT}/secrets/llm-dev-hf-token", f"hf-version: secret {version.inputs.get('secret')}"

    for r in result.registrations:
        leaks = find_text(dict(r.inputs), CANARY)
        assert not leaks, f"{r.name}: the token appears in plaintext at {leaks}"
    assert result.outputs["value"].secret, "value: the token output is not a secret"
    for key, output in result.outputs.items():
        if key != "value":
            assert CANARY not in json.dumps(output.value, default=str), f"output {key}: contains the token"
    assert result.outputs["secret_name"].value == "projects/123456789012/secrets/llm-dev-hf-token"


def test_token_given_as_plain_text_is_still_wrapped():
    result = run_token(token_args(token=CANARY))
    data = result.named("hf-version").inputs["secretData"]
    assert is_wrapped_secret(data) and unwrap_secrets(data) == CANARY, "hf-version: plain token not wrapped as secret"
    assert result.outputs["value"].secret, "value: a plain token came out as a plain output"


@pytest.mark.parametrize("protect", [True, False])
def test_token_protection_reaches_secret_and_version(protect_flags, protect: bool):
    result = run_token(token_args(token=pulumi.Output.secret(CANARY), protect=protect))
    assert inputs_of(result, "hf-secret")["deletionProtection"] is protect, "hf-secret: deletionProtection not from Args"
    assert protect_flags["hf-secret"] is protect, f"hf-secret: protect={protect_flags['hf-secret']}, Args said {protect}"
    assert protect_flags["hf-version"] is protect, f"hf-version: protect={protect_flags['hf-version']}, Args said {protect}"


def test_token_accessors_are_members_on_this_secret_only():
    accessors = {"gemma-build": Grant(ACCESSOR, MEMBER_B), "gemma": Grant(ACCESSOR, MEMBER_A)}
    result = run_token(token_args(token=pulumi.Output.secret(CANARY), accessors=accessors))
    assert names_of(result, SECRET_MEMBER) == ["hf-gemma-accessor", "hf-gemma-build-accessor"]
    grant = result.named("hf-gemma-accessor")
    assert grant.inputs == {"project": PROJECT, "secretId": f"projects/{PROJECT}/secrets/llm-dev-hf-token", "role": ACCESSOR, "member": MEMBER_A}, \
        f"hf-gemma-accessor: {grant.inputs}"
    version_urn = result.named("hf-version").urn
    assert version_urn in grant.dependencies, "hf-gemma-accessor: does not wait for the secret version"
    assert result.of_type(PROJECT_MEMBER) == [], "hf: granted accessor at project level"
    assert_additive_iam_only(result)


@pytest.mark.parametrize(("existing", "full_name"), [
    ("hf-token", f"projects/{PROJECT}/secrets/hf-token"),
    ("projects/shared-secrets/secrets/hf", "projects/shared-secrets/secrets/hf"),
])
def test_token_reference_creates_no_secret_and_grants_on_the_existing_one(existing: str, full_name: str):
    mocks = CloudMocks(project=PROJECT, region=REGION, secret_payload=CANARY)
    result = run_token(token_args(existing_secret=existing, accessors={"gemma": Grant(ACCESSOR, MEMBER_A)}), mocks=mocks)
    assert result.of_type(SECRET) == [] and result.of_type(SECRET_VERSION) == [], \
        f"hf: created {names_of(result, SECRET) + names_of(result, SECRET_VERSION)} for an existing secret"
    grant = inputs_of(result, "hf-gemma-accessor")
    assert grant["secretId"] == full_name and grant["role"] == ACCESSOR and grant["member"] == MEMBER_A, \
        f"hf-gemma-accessor: {grant}"
    assert result.outputs["secret_name"].value == full_name
    assert result.outputs["secret_id"].value == full_name.rsplit("/", 1)[-1]
    value = result.outputs["value"]
    assert value.secret and value.value == CANARY, "value: the existing secret's payload is not a secret output"
    for r in result.registrations:
        assert not find_text(dict(r.inputs), CANARY), f"{r.name}: the token appears in plaintext"


@pytest.mark.parametrize("changes", [dict(), dict(token="x", existing_secret="hf-token")])
def test_token_needs_exactly_one_source(changes: dict):
    with pytest.raises(ValueError, match=r"HuggingFaceToken hf: give either token .* or existing_secret"):
        run_token(token_args(**changes))


def test_token_rejects_public_accessors():
    with pytest.raises(ValueError, match=r"accessors.x: allUsers would make the resource public"):
        run_token(token_args(token="x", accessors={"x": Grant(ACCESSOR, "allUsers")}))


# ---------------------------------------------------------------------------
# ArtifactRegistry


def registry_args(**changes: Any) -> ArtifactRegistryArgs:
    base = dict(project=PROJECT, location=REGION, labels=LABELS, images_repository_id="llm-dev-images",
                dockerhub_repository_id="llm-dev-dockerhub")
    return ArtifactRegistryArgs(**{**base, **changes})


def run_registry(args: ArtifactRegistryArgs) -> tuple[RunResult, dict]:
    paths: dict[str, Any] = {}

    def program():
        registry = ArtifactRegistry("registry", args)
        paths["images"] = registry.images_path
        paths["dockerhub"] = registry.dockerhub_path

    return run(program), paths


def test_registry_has_an_images_repo_and_a_docker_hub_proxy_with_cleanup():
    result, paths = run_registry(registry_args(keep_recent_versions=5, delete_untagged_after_days=3))
    images, hub = inputs_of(result, "registry-images"), inputs_of(result, "registry-dockerhub")
    assert names_of(result, REPOSITORY) == ["registry-dockerhub", "registry-images"]
    for where, repo in (("registry-images", images), ("registry-dockerhub", hub)):
        assert repo["format"] == "DOCKER" and repo["location"] == REGION and repo["project"] == PROJECT, f"{where}: {repo}"
        assert repo["labels"] == LABELS, f"{where}: labels {repo.get('labels')}"
        policies = {p["id"]: p for p in repo["cleanupPolicies"]}
        assert policies["keep-recent"] == {"id": "keep-recent", "action": "KEEP", "mostRecentVersions": {"keepCount": 5}}, \
            f"{where}: keep policy {policies.get('keep-recent')}"
        assert policies["delete-untagged"] == {
            "id": "delete-untagged", "action": "DELETE",
            "condition": {"tagState": "UNTAGGED", "olderThan": f"{3 * 86400}s"}}, \
            f"{where}: delete policy {policies.get('delete-untagged')}"
    assert images["repositoryId"] == "llm-dev-images" and images["mode"] == "STANDARD_REPOSITORY", f"registry-images: {images}"
    assert images["dockerConfig"] == {"immutableTags": True}, "registry-images: tags are not immutable"
    assert hub["repositoryId"] == "llm-dev-dockerhub" and hub["mode"] == "REMOTE_REPOSITORY", f"registry-dockerhub: {hub}"
    assert hub["remoteRepositoryConfig"]["dockerRepository"] == {"publicRepository": "DOCKER_HUB"}, \
        f"registry-dockerhub: upstream {hub['remoteRepositoryConfig']}"
    assert paths == {"images": "us-central1-docker.pkg.dev/mock-project/llm-dev-images",
                     "dockerhub": "us-central1-docker.pkg.dev/mock-project/llm-dev-dockerhub"}


def test_registry_without_docker_hub_proxy():
    result, paths = run_registry(registry_args(docker_hub_remote=False, readers={"gemma": Grant("roles/artifactregistry.reader", MEMBER_A)}))
    assert names_of(result, REPOSITORY) == ["registry-images"], f"registry: {names_of(result, REPOSITORY)}"
    assert paths["dockerhub"] is None
    assert names_of(result, REPOSITORY_MEMBER) == ["registry-images-gemma-artifactregistry-reader"]


def test_registry_readers_on_both_repos_writers_on_images_only():
    readers = {"gemma": Grant("roles/artifactregistry.reader", MEMBER_A),
               "gemma-build": Grant("roles/artifactregistry.reader", MEMBER_B)}
    writers = {"gemma-build": Grant("roles/artifactregistry.writer", MEMBER_B)}
    result, _ = run_registry(registry_args(readers=readers, writers=writers))
    assert names_of(result, REPOSITORY_MEMBER) == [
        "registry-dockerhub-gemma-artifactregistry-reader",
        "registry-dockerhub-gemma-build-artifactregistry-reader",
        "registry-images-gemma-artifactregistry-reader",
        "registry-images-gemma-build-artifactregistry-reader",
        "registry-images-gemma-build-artifactregistry-writer",
    ], f"registry grants: {names_of(result, REPOSITORY_MEMBER)}"
    writer = inputs_of(result, "registry-images-gemma-build-artifactregistry-writer")
    assert writer == {"project": PROJECT, "location": REGION, "repository": "llm-dev-images",
                      "role": "roles/artifactregistry.writer", "member": MEMBER_B}, \
        f"registry-images-gemma-build-artifactregistry-writer: {writer}"
    reader = inputs_of(result, "registry-dockerhub-gemma-artifactregistry-reader")
    assert reader["repository"] == "llm-dev-dockerhub" and reader["member"] == MEMBER_A, \
        f"registry-dockerhub-gemma-artifactregistry-reader: {reader}"
    assert result.of_type(PROJECT_MEMBER) == [], "registry: granted at project level"
    assert_additive_iam_only(result)


def test_registry_rejects_bad_grants():
    with pytest.raises(ValueError, match=r"ArtifactRegistry registry: writers.x: role 'writer'"):
        run_registry(registry_args(writers={"x": Grant("writer", MEMBER_A)}))


# ---------------------------------------------------------------------------
# All of them together.


def test_foundation_components_never_register_authoritative_iam():
    def program():
        apis = ProjectApis("apis", ProjectApisArgs(project=PROJECT, services=("iam.googleapis.com",)))
        sa = WorkloadServiceAccount("llm-dev-gemma", WorkloadServiceAccountArgs(
            project=PROJECT, account_id="llm-dev-gemma", display_name="x", project_roles=("roles/logging.logWriter",)),
            opts=pulumi.ResourceOptions(depends_on=[apis]))
        grant = {"gemma": Grant("roles/storage.objectViewer", sa.member)}
        ModelBucket("models", bucket_args(grants=grant))
        HuggingFaceToken("hf", token_args(token=pulumi.Output.secret(CANARY),
                                          accessors={"gemma": Grant(ACCESSOR, sa.member)}))
        ArtifactRegistry("registry", registry_args(readers={"gemma": Grant("roles/artifactregistry.reader", sa.member)}))

    result = run(program)
    member_types = {r.type for r in result.registrations if r.custom and "iam" in r.type.lower() and r.type != ACCOUNT}
    assert member_types == {PROJECT_MEMBER, BUCKET_MEMBER, SECRET_MEMBER, REPOSITORY_MEMBER}, member_types
    assert_additive_iam_only(result)
    runtime = "serviceAccount:llm-dev-gemma@mock-project.iam.gserviceaccount.com"
    for r in result.registrations:
        if r.type in (BUCKET_MEMBER, SECRET_MEMBER, REPOSITORY_MEMBER):
            assert r.inputs["member"] == runtime, f"{r.name}: member {r.inputs.get('member')}"
