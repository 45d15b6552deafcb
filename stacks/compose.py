"""Compose one stack from its resolved config: the only place that maps config to components.

Order matters and follows what needs what: APIs, then each workload's identity, then the
resources that identities are granted on (bucket, token secret, registry), each carrying its
own grants, then the workloads. A reader can follow any deployed setting along one path:
stack file -> stacks.config -> stacks.resolve (the ServingContainer) -> the Args built here -> the
resource input.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_gcp as gcp
import yaml

from components.hf_token import ACCESSOR, HuggingFaceToken, HuggingFaceTokenArgs
from components.iam import Grant, bucket_only_condition, prefix_condition
from components.model_bucket import ModelBucket, ModelBucketArgs
from components.project_apis import ProjectApis, ProjectApisArgs
from components.registry import ArtifactRegistry, ArtifactRegistryArgs
from components.service_account import WorkloadServiceAccount, WorkloadServiceAccountArgs
from stacks import defaults, monitoring
from stacks.catalog import DATA_DIR
from stacks.config import (
    Platform,
    StackConfig,
    WeightsSource,
    build_account_id,
    copies_weights,
    copy_account_id,
    memory_gib,
    runtime_account_id,
)
from stacks.findings import ERROR, INFO, WARNING, Check
from stacks.resolve import gcs_prefix, private_nodes, pulled_image
from stacks.resolved import ResolvedDeployment, ResolvedStack, StackNames

COMMON_APIS = ("iam.googleapis.com", "storage.googleapis.com")
PLATFORM_APIS = {
    Platform.VERTEX: ("aiplatform.googleapis.com", "compute.googleapis.com"),
    Platform.CLOUDRUN: ("run.googleapis.com", "artifactregistry.googleapis.com"),
    Platform.GKE: ("container.googleapis.com", "compute.googleapis.com", "artifactregistry.googleapis.com",
                   "monitoring.googleapis.com"),
}


@dataclass
class Foundation:
    """What the platform builders share."""

    stack: StackConfig
    names: StackNames
    apis: ProjectApis
    bucket: ModelBucket
    registry: Optional[ArtifactRegistry]
    hf_token: Optional[HuggingFaceToken]
    identities: dict[str, WorkloadServiceAccount]
    build_identities: dict[str, WorkloadServiceAccount]
    copy_identities: dict[str, WorkloadServiceAccount]  # the weights-copy jobs: the only token readers but Vertex AI's
    project_number: pulumi.Output[str]
    outputs: dict[str, Any] = field(default_factory=dict)


@functools.cache
def quota_table() -> dict:
    with open(DATA_DIR / "quotas.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def required_apis(resolved: ResolvedStack) -> tuple[str, ...]:
    stack = resolved.config
    apis = set(COMMON_APIS)
    for d in resolved.deployments.values():
        apis.update(PLATFORM_APIS[d.platform])
        if d.platform is Platform.CLOUDRUN and d.config.cloudrun_options.weights is WeightsSource.IMAGE:
            apis.add("cloudbuild.googleapis.com")
        if copies_weights(d.config):
            apis.update(("run.googleapis.com", "artifactregistry.googleapis.com"))  # the copy job and its image
    if stack.has_hf_token:
        apis.add("secretmanager.googleapis.com")
    if stack.settings.check_quota and resolved.deployments:
        apis.add("cloudquotas.googleapis.com")
    if stack.settings.monitoring.enabled and resolved.deployments:
        apis.add("monitoring.googleapis.com")  # dashboards, alert policies, the Cloud Run metrics sidecar
    return tuple(sorted(apis))


def _needs_registry(resolved: ResolvedStack) -> bool:
    return any(d.platform in (Platform.CLOUDRUN, Platform.GKE) or copies_weights(d.config)
               for d in resolved.deployments.values())


def _needs_token(d: ResolvedDeployment) -> bool:
    """Does this deployment's serving (or image build) read the Hugging Face token? Not when the
    weights-copy job puts the weights into the bucket: then the job alone reads it. Vertex AI does:
    its Model Garden deployment resource takes the model from the Hub only (README "How weights and
    caches reach a replica")."""
    if not d.model.gated or copies_weights(d.config):
        return False
    if d.platform is Platform.CLOUDRUN:
        return d.config.cloudrun_options.weights in (WeightsSource.HUB, WeightsSource.IMAGE)
    return True


def build_foundation(resolved: ResolvedStack, hf_token_value: Optional[pulumi.Output[str]]) -> Foundation:
    stack = resolved.config
    prefix = stack.prefix
    protect = stack.protections.protect_stateful
    apis = ProjectApis(f"{prefix}-apis", ProjectApisArgs(project=stack.project, services=required_apis(resolved)))
    after_apis = pulumi.ResourceOptions(depends_on=[apis])

    identities: dict[str, WorkloadServiceAccount] = {}
    build_identities: dict[str, WorkloadServiceAccount] = {}
    copy_identities: dict[str, WorkloadServiceAccount] = {}
    for name, d in resolved.deployments.items():
        if copies_weights(d.config):
            copy_identities[name] = WorkloadServiceAccount(
                f"{prefix}-{name}-copy",
                WorkloadServiceAccountArgs(
                    project=stack.project,
                    account_id=copy_account_id(prefix, name),
                    display_name=f"Weights copy for {name}",
                    description=f"Copies {d.model.hf_id} from the Hugging Face Hub into the model bucket; the only "
                                "reader of the token.",
                    protect=protect,
                ),
                opts=after_apis,
            )
        if d.platform is not Platform.CLOUDRUN:
            # GKE workloads use their Kubernetes service account's own principal; a Vertex AI
            # Model Garden deployment takes no service account (it runs as Vertex's agent).
            continue
        identities[name] = WorkloadServiceAccount(
            f"{prefix}-{name}",
            WorkloadServiceAccountArgs(
                project=stack.project,
                account_id=runtime_account_id(prefix, name),
                display_name=f"vLLM {d.platform.value} workload {name}",
                description=f"Serves {d.model.hf_id}; managed by Pulumi stack {stack.stack}.",
                # The metrics sidecar writes vLLM's metrics to Managed Service for Prometheus as this account.
                project_roles=("roles/monitoring.metricWriter",) if stack.settings.monitoring.enabled else (),
                protect=protect,
            ),
            opts=after_apis,
        )
        if d.platform is Platform.CLOUDRUN and d.config.cloudrun_options.weights is WeightsSource.IMAGE:
            build_identities[name] = WorkloadServiceAccount(
                f"{prefix}-{name}-build",
                WorkloadServiceAccountArgs(
                    project=stack.project,
                    account_id=build_account_id(prefix, name),
                    display_name=f"Image build for {name}",
                    description="Runs the Cloud Build that bakes model weights into an image.",
                    # Cloud Build with a user-managed account must write its own logs.
                    project_roles=("roles/logging.logWriter",),
                    protect=protect,
                ),
                opts=after_apis,
            )

    project_number = gcp.organizations.get_project_output(project_id=stack.project).number

    bucket_settings = stack.settings.bucket
    bucket_name = resolved.names.bucket
    bucket_grants: dict[str, Grant] = {}
    for name, d in resolved.deployments.items():
        if d.platform is Platform.CLOUDRUN and d.config.cloudrun_options.weights in (WeightsSource.GCS,
                                                                                      WeightsSource.STREAM):
            # Read its own model's objects, and list names (checked on the bucket) for the mount or the streamer.
            member = identities[name].member
            bucket_grants[f"{name}-list"] = Grant("roles/storage.objectViewer", member,
                                                  bucket_only_condition(bucket_name), "list-only")
            bucket_grants[name] = Grant("roles/storage.objectViewer", member,
                                        prefix_condition(bucket_name, (gcs_prefix(d.config) + "/",)), "own-model")
        if d.platform is Platform.CLOUDRUN and d.compile_cache is not None:
            # The compile-cache sidecar lists, reads and writes its keyed prefix, nothing else.
            member = identities[name].member
            bucket_grants[f"{name}-list"] = Grant("roles/storage.objectViewer", member,
                                                  bucket_only_condition(bucket_name), "list-only")
            bucket_grants[f"{name}-compile-cache"] = Grant(
                "roles/storage.objectUser", member, prefix_condition(bucket_name, (d.compile_cache.prefix,)),
                "compile-cache")
    bucket = ModelBucket(
        f"{prefix}-models",
        ModelBucketArgs(
            project=stack.project,
            bucket_name=resolved.names.bucket,
            location=stack.region,
            labels=stack.labels(),
            force_destroy=bucket_settings.force_destroy and stack.protections.allow_force_destroy,
            versioning=bucket_settings.versioning,
            soft_delete_days=bucket_settings.soft_delete_days,
            hierarchical_namespace=bucket_settings.hierarchical_namespace,
            anywhere_cache_zones=bucket_settings.anywhere_cache_zones,
            anywhere_cache_ttl_seconds=bucket_settings.anywhere_cache_ttl_seconds,
            protect=protect,
            grants=bucket_grants,
        ),
        opts=after_apis,
    )

    hf_token = None
    if stack.has_hf_token:
        accessors = {f"{name}-copy": Grant(ACCESSOR, sa.member) for name, sa in copy_identities.items()
                     if resolved.deployments[name].model.gated}
        for name, d in resolved.deployments.items():
            if d.platform is Platform.CLOUDRUN and _needs_token(d):
                if d.config.cloudrun_options.weights is WeightsSource.HUB:
                    accessors[name] = Grant(ACCESSOR, identities[name].member)
                else:
                    accessors[f"{name}-build"] = Grant(ACCESSOR, build_identities[name].member)
        hf_token = HuggingFaceToken(
            f"{prefix}-hf-token",
            HuggingFaceTokenArgs(
                project=stack.project,
                region=stack.region,
                labels=stack.labels(),
                secret_id=resolved.names.hf_token_secret,
                token=hf_token_value if stack.hf_token_set else None,
                existing_secret=None if stack.hf_token_set else stack.settings.hf_token_secret,
                accessors=accessors,
                protect=protect,
            ),
            opts=after_apis,
        )

    registry = None
    if _needs_registry(resolved):
        readers = {name: Grant("roles/artifactregistry.reader", identities[name].member)
                   for name, d in resolved.deployments.items() if d.platform is Platform.CLOUDRUN}
        readers.update({f"{name}-build": Grant("roles/artifactregistry.reader", sa.member)
                        for name, sa in build_identities.items()})
        readers.update({f"{name}-copy": Grant("roles/artifactregistry.reader", sa.member)
                        for name, sa in copy_identities.items()})
        writers = {f"{name}-build": Grant("roles/artifactregistry.writer", sa.member)
                   for name, sa in build_identities.items()}
        settings = stack.settings.registry
        registry = ArtifactRegistry(
            f"{prefix}-registry",
            ArtifactRegistryArgs(
                project=stack.project,
                location=stack.region,
                labels=stack.labels(),
                images_repository_id=resolved.names.images_repository,
                dockerhub_repository_id=resolved.names.dockerhub_repository,
                docker_hub_remote=settings.docker_hub_remote,
                keep_recent_versions=settings.keep_recent_versions,
                delete_untagged_after_days=settings.delete_untagged_after_days,
                readers=readers,
                writers=writers,
                protect=stack.protections.protect_stateful,
            ),
            opts=after_apis,
        )

    foundation = Foundation(stack=stack, names=resolved.names, apis=apis, bucket=bucket, registry=registry,
                            hf_token=hf_token, identities=identities, build_identities=build_identities,
                            copy_identities=copy_identities, project_number=project_number)
    foundation.outputs.update({
        "project": stack.project,
        "region": stack.region,
        "environment": stack.environment.value,
        "model_bucket": bucket.name,
        "apis": list(required_apis(resolved)),
    })
    if registry is not None:
        foundation.outputs["images_repository"] = registry.images_path
    if hf_token is not None:
        foundation.outputs["hf_token_secret"] = hf_token.secret_name
    return foundation


def quota_requirements(resolved: ResolvedStack) -> dict[tuple[str, str], int]:
    """(service, quota id) -> accelerators the stack needs at max replicas."""
    table = quota_table()
    needs: dict[tuple[str, str], int] = {}
    for d in resolved.deployments.values():
        section = table[d.platform.value]
        key = d.hardware.accelerator.key
        if d.platform is Platform.CLOUDRUN and not d.config.cloudrun_options.gpu_zonal_redundancy:
            key = f"{key}/no-zonal-redundancy"
        quota_id = section["ids"].get(key)
        if quota_id is None:
            continue
        count = d.scaling.max_replicas * d.hardware.devices
        needs[(section["service"], quota_id)] = needs.get((section["service"], quota_id), 0) + count
    return needs


def replacement_needs(resolved: ResolvedStack) -> dict[tuple[str, str], tuple[int, str]]:
    """(service, quota id) -> (extra accelerators, deployment) while the largest Vertex AI endpoint
    that replaces create-first runs next to its successor."""
    table = quota_table()
    extra: dict[tuple[str, str], tuple[int, str]] = {}
    for d in resolved.deployments.values():
        options = d.config.vertex_options
        if d.platform is not Platform.VERTEX or options.existing_endpoint or options.delete_before_replace:
            continue
        section = table[d.platform.value]
        quota_id = section["ids"].get(d.hardware.accelerator.key)
        if quota_id is None:
            continue
        count = d.scaling.max_replicas * d.hardware.devices
        key = (section["service"], quota_id)
        if count > extra.get(key, (0, ""))[0]:
            extra[key] = (count, d.name)
    return extra


# How the offline engine refuses a quota read (it knows no real quota); said as such, never as a number.
QUOTA_NOT_READ_OFFLINE = "not read offline"


def quota_checks(resolved: ResolvedStack) -> list[Check]:
    """Compare accelerator quota with what the stack needs at max replicas, before anything is
    registered: an error when it is exceeded, a warning when it cannot be read (for example
    before the Cloud Quotas API is enabled on a first deploy)."""
    stack = resolved.config
    checks: list[Check] = []
    switching = replacement_needs(resolved)
    for (service, quota_id), needed in sorted(quota_requirements(resolved).items()):
        extra, endpoint = switching.get((service, quota_id), (0, ""))
        during = (f"; {needed + extra} while the Vertex AI endpoint of {endpoint} is replaced (the new endpoint is "
                  f"deployed before the old one is deleted)") if extra else ""
        try:
            info = gcp.cloudquota.get_s_quota_info(parent=f"projects/{stack.project}", service=service, quota_id=quota_id)
            limit = _regional_limit(info, stack.region)
        except Exception as error:  # noqa: BLE001 - any read failure is reported, never fatal
            limit, reason = None, str(error).splitlines()[0][:160]
        else:
            reason = "no value for this region"
        if limit is None and QUOTA_NOT_READ_OFFLINE in reason:
            checks.append(Check("", INFO, f"quota {service}/{quota_id} in {stack.region}: {QUOTA_NOT_READ_OFFLINE}; "
                                          f"the stack needs {needed} at max replicas{during} (`pulumi preview` reads "
                                          "the quota and refuses a deploy it cannot hold)"))
        elif limit is None:
            checks.append(Check("", WARNING, f"quota {service}/{quota_id} in {stack.region} could not be read "
                                             f"({reason}); the stack needs {needed} at max replicas. Check it before deploying"))
        elif limit < needed:
            checks.append(Check("", ERROR, f"quota {service}/{quota_id} in {stack.region} is {limit}, but the stack "
                                           f"needs {needed} accelerators at max replicas; request more quota or lower maxReplicas"))
        elif limit < needed + extra:
            checks.append(Check("", WARNING, f"quota {service}/{quota_id} in {stack.region} is {limit}: enough for the "
                                             f"{needed} accelerators the stack needs at max replicas, not for "
                                             f"{needed + extra} while the Vertex AI endpoint of {endpoint} is replaced "
                                             "(the new endpoint is deployed before the old one is deleted), so a change "
                                             "that replaces it would fail. Request more quota, or set "
                                             f"llm-serving:deployments.{endpoint}.vertex.deleteBeforeReplace: true "
                                             "(downtime while it is replaced)"))
        else:
            checks.append(Check("", INFO, f"quota {service}/{quota_id} in {stack.region}: {limit} available, {needed} needed"
                                          f"{during}"))
    return checks


def _regional_limit(info: Any, region: str) -> Optional[int]:
    limit = None
    for dims in info.dimensions_infos or []:
        locations = list(dims.applicable_locations or [])
        dimension_region = (dims.dimensions or {}).get("region")
        if dimension_region not in (None, region) or (locations and region not in locations and "global" not in locations):
            continue
        for detail in dims.details or []:
            try:
                limit = int(detail.value)
            except (TypeError, ValueError):
                continue
    return limit


# ---------------------------------------------------------------------------
# Platforms.


def build(resolved: ResolvedStack, hf_token_value: Optional[pulumi.Output[str]]) -> dict[str, Any]:
    """Register every resource of the stack; return the stack outputs."""
    foundation = build_foundation(resolved, hf_token_value)
    deployments: dict[str, Any] = {}
    cluster = _gke_cluster(foundation, resolved)
    gke = [d for d in resolved.deployments.values() if d.platform is Platform.GKE]
    # The custom-metrics adapter serves the HPAs; a deployment scaled by KEDA has none.
    needs_adapter = any(not d.config.gke_options.scale_to_zero for d in gke)
    adapter = _metrics_adapter(foundation, cluster) if cluster is not None and needs_adapter else None
    keda = _keda(foundation, cluster, [d for d in gke if d.config.gke_options.scale_to_zero]) if cluster else None
    classes = _compute_classes(foundation, cluster) if cluster is not None else {}
    namespaces: set[str] = set()
    targets: dict[str, monitoring.Target] = {}
    for name, d in resolved.deployments.items():
        copy_job = _weights_copy(foundation, d) if copies_weights(d.config) else None
        if d.platform is Platform.VERTEX:
            deployments[name], targets[name] = _vertex(foundation, d)
        elif d.platform is Platform.CLOUDRUN:
            deployments[name], targets[name] = _cloudrun(foundation, d, copy_job)
        else:
            namespace = d.config.gke_options.namespace
            deployments[name], targets[name] = _gke_workload(foundation, cluster, adapter, keda, d, copy_job,
                                                             create_namespace=namespace not in namespaces,
                                                             compute_class=classes.get(d.hardware.node_pool or ""))
            namespaces.add(namespace)
        if copy_job is not None:
            deployments[name]["weights"] = {"uri": copy_job.uri, "copy_job": copy_job.job_name,
                                            "execution_token": copy_job.execution_token}
    outputs = dict(foundation.outputs)
    outputs["deployments"] = deployments
    if cluster is not None:
        outputs["gke_cluster"] = cluster.cluster_name
    if resolved.config.settings.monitoring.enabled and targets:
        outputs["monitoring"] = _monitoring(foundation, resolved, targets)
    return outputs


def _monitoring(foundation: Foundation, resolved: ResolvedStack, targets: dict[str, monitoring.Target]) -> dict[str, Any]:
    """The stack's dashboard (a section per deployment) and every deployment's alert policies."""
    from components.observability import ServingAlerts, ServingAlertsArgs, ServingDashboard, ServingDashboardArgs

    stack = foundation.stack
    settings = stack.settings.monitoring
    after_apis = pulumi.ResourceOptions(depends_on=[foundation.apis])
    dashboard = ServingDashboard(
        f"{stack.prefix}-dashboard",
        ServingDashboardArgs(
            project=stack.project,
            display_name=f"LLM serving: {stack.stack} ({stack.prefix})",
            sections=tuple(monitoring.section(d, targets[name]) for name, d in resolved.deployments.items()),
        ),
        opts=after_apis,
    )
    policies = tuple(spec for name, d in resolved.deployments.items()
                     for spec in monitoring.alerts(d, stack, targets[name]))
    alerts = ServingAlerts(
        f"{stack.prefix}-alerts",
        ServingAlertsArgs(
            project=stack.project,
            policies=policies,
            notification_emails=settings.notification_emails,
            notification_channels=settings.notification_channels,
            channel_prefix=stack.prefix,
            labels=stack.labels(),
        ),
        opts=after_apis,
    )
    return {
        "dashboard_url": dashboard.dashboard_url,
        "alert_policies": {spec.key: spec.display_name for spec in policies},
        "alert_policy_ids": alerts.policy_names,
        "notifies": list(settings.notification_emails) + list(settings.notification_channels),
    }


def _deployment_labels(stack: StackConfig, d: ResolvedDeployment) -> dict[str, str]:
    return stack.labels(deployment=d.name, **dict(d.config.labels))


def _token_for(foundation: Foundation, d: ResolvedDeployment) -> Optional[pulumi.Output[str]]:
    if foundation.hf_token is None or not _needs_token(d):
        return None
    return foundation.hf_token.value


def _vertex(foundation: Foundation, d: ResolvedDeployment) -> tuple[dict[str, Any], monitoring.Target]:
    from components.vertex import (
        AdoptedVertexEndpoint,
        AdoptedVertexEndpointArgs,
        VertexVllmEndpoint,
        VertexVllmEndpointArgs,
        custom_code_service_agent,
    )
    from stacks.catalog import CATALOG

    stack = foundation.stack
    options = d.config.vertex_options
    adapters = dict(d.config.lora.adapters)
    # The container runs as Vertex AI's custom-code service agent: it is the identity that reads
    # LoRA adapters, granted on the model bucket only (by the component).
    adapter_reader = foundation.project_number.apply(custom_code_service_agent) if adapters else None
    if options.existing_endpoint:
        adopted = AdoptedVertexEndpoint(
            f"{stack.prefix}-{d.name}",
            AdoptedVertexEndpointArgs(
                endpoint_id=options.existing_endpoint.rsplit("/", 1)[-1],
                region=stack.region,
                hugging_face_model_id=d.config.model,
                dedicated_endpoint=options.dedicated_endpoint,
                project=stack.project,
                project_number=foundation.project_number,
                service_account_email=adapter_reader,
                lora_bucket=foundation.names.bucket if adapters else None,
                lora_adapters=adapters,
            ),
            opts=pulumi.ResourceOptions(depends_on=[foundation.apis, foundation.bucket]),
        )
        return adopted.client_outputs(), monitoring.vertex_target(d, stack, adopted.client.endpoint_id,
                                                                  adopted.client.logs_url)
    machines = {m.name: (accelerator, m.accelerator_count) for m in CATALOG.machine_types.values()
                if (accelerator := CATALOG.accelerators[m.accelerator].vertex_accelerator)}
    # Resolve gives every Vertex deployment a machine type with a Vertex accelerator, or refuses it.
    assert d.hardware.machine_type is not None and d.hardware.accelerator.vertex_accelerator is not None
    endpoint = VertexVllmEndpoint(
        f"{stack.prefix}-{d.name}",
        VertexVllmEndpointArgs(
            region=stack.region,
            project=stack.project,
            project_number=foundation.project_number,
            hugging_face_model_id=d.config.model,
            container=d.container,
            machine_type=d.hardware.machine_type,
            accelerator_type=d.hardware.accelerator.vertex_accelerator,
            accelerator_count=d.hardware.devices,
            machine_accelerators=machines,
            hf_token=_token_for(foundation, d),
            accept_eula=d.model.gated,
            hugging_face_cache_enabled=options.hugging_face_cache,
            shared_memory_size_mb=options.shared_memory_gib * 1024,
            deployment_timeout_seconds=options.deployment_timeout_seconds,
            min_replicas=d.scaling.min_replicas,
            max_replicas=d.scaling.max_replicas,
            duty_cycle_target=int(d.scaling.target),
            spot=options.spot,
            dedicated_endpoint=options.dedicated_endpoint,
            display_name=f"{stack.prefix}-{d.name}",
            service_account_email=adapter_reader,
            lora_bucket=foundation.names.bucket if adapters else None,
            lora_adapters=adapters,
            delete_before_replace=options.delete_before_replace,
        ),
        # prod: a replacement changes the endpoint id and URLs callers use, so it takes a deliberate unprotect.
        opts=pulumi.ResourceOptions(depends_on=[foundation.apis, foundation.bucket],
                                    protect=stack.protections.protect_stateful),
    )
    return endpoint.client_outputs(), monitoring.vertex_target(d, stack, endpoint.endpoint_id, endpoint.logs_url)


def _weights_copy(foundation: Foundation, d: ResolvedDeployment):
    """The deployment's weights-copy job: the pinned revision into the bucket, once, before serving starts."""
    from components.weights_copy import WeightsCopyJob, WeightsCopyJobArgs
    from stacks.catalog import CATALOG
    from stacks.resolve import pulled_image

    stack = foundation.stack
    hf_token = foundation.hf_token
    token_secret = hf_token.secret_name if (hf_token is not None and d.model.gated) else None
    # The job runs on a vLLM GPU serving image the stack already pins and pulls through its registry
    # (Python, huggingface_hub, google-cloud-storage): a Cloud Run deployment's own image (so a digest
    # pinned there pins the job too), else the catalog's Cloud Run image.
    own = d.container.image
    image = (own if d.platform is Platform.CLOUDRUN and isinstance(own, str)
             else pulled_image(CATALOG.default_image("cloudrun").ref, Platform.CLOUDRUN, foundation.names))
    waits_for: list[pulumi.Resource] = [foundation.apis, foundation.bucket]
    waits_for += [r for r in (foundation.registry, hf_token if token_secret is not None else None) if r is not None]
    return WeightsCopyJob(
        f"{stack.prefix}-{d.name}-weights",
        WeightsCopyJobArgs(
            project=stack.project,
            region=stack.region,
            job_name=defaults.WEIGHTS_COPY_JOB.format(prefix=stack.prefix, deployment=d.name),
            model_id=d.config.model,
            revision=d.config.model_revision or defaults.WEIGHTS_UNPINNED_REVISION,
            bucket=foundation.bucket.name,
            prefix=gcs_prefix(d.config),
            image=image,
            service_account_email=foundation.copy_identities[d.name].email,
            hf_token_secret=token_secret,
            labels=_deployment_labels(stack, d),
            depends_on=tuple(waits_for),
        ),
    )


def _cloudrun(foundation: Foundation, d: ResolvedDeployment, copy_job=None) -> tuple[dict[str, Any], monitoring.Target]:
    from components.cloudrun import (
        METRICS_SIDECAR_IMAGE,
        CloudRunVllmService,
        CloudRunVllmServiceArgs,
        GcsVolume,
        SecretRef,
    )
    from components.image_build import ModelImageBuild, ModelImageBuildArgs
    from stacks.resolve import GCS_MOUNT

    stack = foundation.stack
    options = d.config.cloudrun_options
    name = f"{stack.prefix}-{d.name}"
    container = d.container
    hf_token = None
    gcs_volume = None
    if options.weights is WeightsSource.IMAGE:
        build_sa = foundation.build_identities[d.name]
        assert foundation.registry is not None  # built whenever a deployment bakes weights into an image
        token_secret = foundation.hf_token.secret_name if (foundation.hf_token and _needs_token(d)) else None
        build = ModelImageBuild(
            f"{name}-image",
            ModelImageBuildArgs(
                project=stack.project,
                region=stack.region,
                repository_url=foundation.registry.images_path,
                image_name=f"vllm-{d.name}",
                model_id=d.config.model,
                model_revision=d.config.model_revision,
                base_image=d.container.image,
                hf_token=token_secret,
                build_service_account=build_sa.email,
            ),
            opts=pulumi.ResourceOptions(depends_on=[foundation.apis, foundation.registry, foundation.bucket]
                                        + ([foundation.hf_token] if foundation.hf_token else [])),
        )
        # The one field known only after the build: the resolved image with the weights baked in.
        container = dataclasses.replace(container, image=build.image_by_digest)
    elif options.weights is WeightsSource.GCS:
        gcs_volume = GcsVolume(bucket=foundation.bucket.name, mount_path=GCS_MOUNT, read_only=True)
    elif foundation.hf_token is not None and _needs_token(d):
        hf_token = SecretRef(secret=foundation.hf_token.secret_name)

    accelerator = d.hardware.accelerator
    # Resolve gives every Cloud Run deployment a Cloud Run GPU with its minimums, a CPU, a memory size and
    # a request concurrency.
    assert accelerator.cloudrun_gpu is not None and d.hardware.cpu is not None and d.hardware.memory is not None
    assert accelerator.cloudrun_min_cpu is not None and accelerator.cloudrun_min_memory_gib is not None
    assert d.scaling.max_concurrency is not None
    service = CloudRunVllmService(
        name,
        CloudRunVllmServiceArgs(
            project=stack.project,
            region=stack.region,
            service_name=name,
            container=container,
            service_account_email=foundation.identities[d.name].email,
            min_cpu=accelerator.cloudrun_min_cpu,
            min_memory_gib=accelerator.cloudrun_min_memory_gib,
            hf_token=hf_token,
            gpu_type=accelerator.cloudrun_gpu,
            cpu=int(float(d.hardware.cpu)),
            memory_gib=int(memory_gib(d.hardware.memory)),
            gpu_zonal_redundancy=options.gpu_zonal_redundancy,
            min_replicas=d.scaling.min_replicas,
            max_replicas=d.scaling.max_replicas,
            max_concurrency=d.scaling.max_concurrency,
            request_timeout_seconds=options.request_timeout_seconds,
            startup_timeout_seconds=_startup_seconds(d),
            ingress=options.ingress.value,
            invokers=options.invokers,
            allow_public=stack.settings.access.allow_public_invokers,
            gcs_volume=gcs_volume,
            deletion_protection=stack.protections.deletion_protection,
            labels=_deployment_labels(stack, d),
            metrics_sidecar_image=((stack.settings.monitoring.cloud_run_sidecar_image or METRICS_SIDECAR_IMAGE)
                                   if stack.settings.monitoring.enabled else None),
            compile_cache=(dataclasses.replace(d.compile_cache, image=pulled_image(d.compile_cache.image, d.platform,
                                                                                   foundation.names))
                           if d.compile_cache else None),
            compile_cache_bucket=foundation.bucket.name if d.compile_cache else None,
        ),
        opts=pulumi.ResourceOptions(depends_on=[foundation.apis]
                                    + ([foundation.registry] if foundation.registry else [])
                                    + ([foundation.hf_token] if foundation.hf_token else [])
                                    + [foundation.bucket] + ([copy_job] if copy_job is not None else [])),
    )
    outputs = {
        "platform": "cloudrun",
        "model": d.config.model,
        "served_model_name": d.container.served_model_name,
        "url": service.uri,
        "image": container.image,
        "proxy_command": service.proxy_command,
        "curl_example": service.curl_example,
        "openai_example": service.openai_example,
    }
    access = []
    if options.weights in (WeightsSource.GCS, WeightsSource.STREAM):
        access.append(f"list object names and read objects under {gcs_prefix(d.config)}/ only")
    if d.compile_cache is not None:
        access.append(("" if access else "list object names; ")
                      + f"read and write its compile cache under {d.compile_cache.prefix} only")
    if access:
        outputs["bucket_access"] = pulumi.Output.concat(foundation.identities[d.name].email, " may ", "; ".join(access))
    return outputs, monitoring.cloudrun_target(d, stack, service_name=name)


def _gke_cluster(foundation: Foundation, resolved: ResolvedStack):
    if not any(d.platform is Platform.GKE for d in resolved.deployments.values()):
        return None
    from components.gke_cluster import ArtifactRepository, GkeCluster, GkeClusterArgs, NodePoolSpec
    from stacks.catalog.gke import gke_hardware

    stack = foundation.stack
    gke = stack.settings.gke
    # Config refuses a GKE deployment without the gke block; resolve names the cluster whenever there is one.
    assert gke is not None and foundation.names.cluster is not None
    pools = {
        name: NodePoolSpec(
            machine_type=p.machine_type,
            tpu_topology=p.tpu_topology,
            accelerator_count=p.gpu_count,
            total_min_node_count=p.min_nodes,
            total_max_node_count=p.max_nodes,
            spot=p.spot,
            reservation=p.reservation,
            disk_size_gb=p.disk_size_gb,
            node_locations=p.node_locations,
            compute_class=name if p.fallbacks else None,
        )
        for name, p in gke.node_pools.items()
    }
    registry = foundation.registry
    repositories: tuple[ArtifactRepository, ...] = ()
    if registry is not None and registry.dockerhub is not None:
        repositories = (ArtifactRepository(location=stack.region, repository_id=foundation.names.dockerhub_repository),)
    return GkeCluster(
        f"{stack.prefix}-gke",
        GkeClusterArgs(
            project=stack.project,
            location=gke.location,
            cluster_name=foundation.names.cluster,
            hardware=gke_hardware(),
            enable_autopilot=gke.autopilot,
            release_channel=gke.release_channel.value,
            min_master_version=gke.min_master_version,
            deletion_protection=stack.protections.deletion_protection,
            network=gke.network,
            subnetwork=gke.subnetwork,
            node_pools={} if gke.autopilot else pools,
            labels=stack.labels(),
            image_repositories=repositories,
            private_nodes=private_nodes(stack),
            master_authorized_networks=gke.master_authorized_networks,
            master_ipv4_cidr_block=gke.master_ipv4_cidr_block,
            maintenance=_maintenance(gke.maintenance),
        ),
        # protect is inherited by the cluster, its node pools and the provider.
        opts=pulumi.ResourceOptions(depends_on=[foundation.apis] + ([registry] if registry else []),
                                    protect=stack.protections.protect_stateful),
    )


def _maintenance(m):
    """The cluster's maintenance window and exclusions, or None when the stack sets neither."""
    from components.gke_cluster import MaintenanceExclusion, MaintenancePolicy

    if not m.has_window and not m.exclusions:
        return None
    return MaintenancePolicy(
        window_start=m.window_start, window_end=m.window_end, window_recurrence=m.window_recurrence,
        exclusions=tuple(MaintenanceExclusion(name=name, start_time=e.start, end_time=e.end, scope=e.scope.value)
                         for name, e in m.exclusions.items()),
    )


def _compute_classes(foundation: Foundation, cluster) -> dict[str, Any]:
    """A ComputeClass per node pool with fallbacks, named after the pool (Standard clusters only)."""
    from components.compute_class import ComputeClassArgs, GkeComputeClass
    from stacks.catalog.gke import gke_hardware

    stack = foundation.stack
    gke = stack.settings.gke
    assert gke is not None
    if gke.autopilot:
        return {}
    hardware = gke_hardware()
    classes: dict[str, Any] = {}
    for name, pool in gke.node_pools.items():
        shape = hardware.machine_types.get(pool.machine_type)
        if not pool.fallbacks or shape is None:
            continue
        classes[name] = GkeComputeClass(
            f"{stack.prefix}-{name}-class",
            ComputeClassArgs(
                provider=cluster.provider, class_name=name, node_pool=name, accelerator_kind=shape.kind,
                gke_accelerator=shape.gke_accelerator, accelerator_count=shape.count,
                machine_type=pool.machine_type, tpu_topology=pool.tpu_topology,
                fallbacks=tuple(f.value for f in pool.fallbacks), reservation=pool.reservation,
                node_service_account=cluster.node_service_account_email,
                labels={"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "llm-serving"},
            ),
            opts=pulumi.ResourceOptions(depends_on=[cluster]),
        )
    return classes


def _metrics_adapter(foundation: Foundation, cluster):
    """One custom-metrics adapter per cluster, shared by every deployment's HPA."""
    from components.metrics_adapter import DEFAULT_ADAPTER_IMAGE, CustomMetricsAdapter, CustomMetricsAdapterArgs

    gke = foundation.stack.settings.gke
    return CustomMetricsAdapter(
        f"{foundation.stack.prefix}-metrics-adapter",
        CustomMetricsAdapterArgs(provider=cluster.provider, project=foundation.stack.project,
                                 image=(gke.metrics_adapter_image if gke else None) or DEFAULT_ADAPTER_IMAGE,
                                 project_number=foundation.project_number,
                                 protect=foundation.stack.protections.protect_stateful),
        opts=pulumi.ResourceOptions(depends_on=[cluster]),
    )


def _keda(foundation: Foundation, cluster, scaled: list[ResolvedDeployment]):
    """KEDA and its HTTP add-on, once per cluster, when a GKE deployment scales to zero. The
    interceptor waits as long as the slowest of them takes to wake."""
    if not scaled:
        return None
    from components.keda import HttpAddOnValues, InterceptorValues, KedaInstall, KedaInstallArgs
    from stacks.resolved import wake_timings

    stack = foundation.stack
    timings = [wake_timings(d) for d in scaled]
    interceptor = InterceptorValues(condition_wait_seconds=max(t.wait_seconds for t in timings),
                                    response_header_seconds=max(t.response_header_seconds for t in timings))
    clients = sorted({ns for d in scaled for ns in d.config.gke_options.allowed_namespaces})
    return KedaInstall(
        f"{stack.prefix}-keda",
        KedaInstallArgs(provider=cluster.provider, project=stack.project, project_number=foundation.project_number,
                        http_add_on_values=HttpAddOnValues(interceptor=interceptor),
                        proxy_client_namespaces=tuple(clients), labels=stack.labels()),
        opts=pulumi.ResourceOptions(depends_on=[cluster, foundation.apis]),
    )


def _placement(foundation: Foundation, cluster, d: ResolvedDeployment):
    from components.gke_cluster import autopilot_placement
    from stacks.catalog.gke import gke_hardware

    gke = foundation.stack.settings.gke
    assert gke is not None and d.hardware.node_pool is not None  # resolve picks the pool of every GKE deployment
    if gke.autopilot:
        # Autopilot provisions one node per replica from the workload's selectors; the config
        # requires hardware.machineType on an Autopilot cluster, and resolve sets the topology.
        return autopilot_placement(d.hardware.machine_type or "", d.hardware.tpu_topology, d.scaling.max_replicas,
                                   gke_hardware())
    return cluster.placement(d.hardware.node_pool)


def _gke_workload(foundation: Foundation, cluster, adapter, keda, d: ResolvedDeployment, copy_job, *,
                  create_namespace: bool, compute_class=None) -> tuple[dict[str, Any], monitoring.Target]:
    from components.api_key import ServingApiKey, ServingApiKeyArgs
    from components.gke_workload import CONTAINER_NAME as VLLM_CONTAINER
    from components.gke_workload import PodPeer, VllmGkeWorkload, VllmGkeWorkloadArgs
    from stacks.resolve import GKE_DATA_DIR, gke_bucket_prefixes, gke_pod_requests
    from stacks.startup import deployment_start_seconds, hpa_windows

    stack = foundation.stack
    options = d.config.gke_options
    scale_to_zero = options.scale_to_zero
    interceptor: tuple[PodPeer, ...] = ()
    if scale_to_zero:
        from components.keda import INTERCEPTOR_POD_LABELS
        assert keda is not None  # built whenever a GKE deployment scales to zero
        interceptor = (PodPeer(namespace=keda.namespace, match_labels=INTERCEPTOR_POD_LABELS),)
    assert d.scaling.metric is not None  # resolve picks the HPA metric of every GKE deployment
    app_name = f"vllm-{d.name}"
    api_key = None
    if options.api_key:
        api_key = ServingApiKey(
            f"{stack.prefix}-{d.name}-key",
            ServingApiKeyArgs(project=stack.project, region=stack.region,
                              secret_id=defaults.API_KEY_SECRET.format(prefix=stack.prefix, deployment=d.name),
                              labels=_deployment_labels(stack, d), existing_secret=options.api_key_secret,
                              protect=stack.protections.protect_stateful),
            opts=pulumi.ResourceOptions(depends_on=[foundation.apis]),
        )
    cpu, memory = gke_pod_requests(d)
    start_seconds = deployment_start_seconds(d)
    windows = hpa_windows(start_seconds)
    drain = d.vllm.shutdown_timeout or 0  # 0: the pinned vLLM cannot drain, SIGTERM aborts
    workload = VllmGkeWorkload(
        f"{stack.prefix}-{d.name}",
        VllmGkeWorkloadArgs(
            provider=cluster.provider,
            project=stack.project,
            project_number=foundation.project_number,
            model_bucket=foundation.bucket.name,
            container=d.container,
            accelerator=_placement(foundation, cluster, d),
            namespace=options.namespace,
            create_namespace=create_namespace,
            app_name=app_name,
            hf_token=_token_for(foundation, d),
            mount_path=GKE_DATA_DIR,
            startup_timeout_seconds=_startup_seconds(d),
            min_replicas=d.scaling.min_replicas,
            max_replicas=d.scaling.max_replicas,
            autoscaling_metric=d.scaling.metric,
            autoscaling_target=d.scaling.target,
            public_load_balancer=options.public_load_balancer,
            labels=_deployment_labels(stack, d),
            api_key=api_key.value if api_key else None,
            allowed_namespaces=options.allowed_namespaces,
            allowed_cidrs=options.allowed_cidrs,
            bucket_prefixes=gke_bucket_prefixes(d),
            read_prefixes=(gcs_prefix(d.config) + "/",),
            cpu_request=cpu,
            memory_request=memory,
            protect=stack.protections.protect_stateful,
            public_endpoint_acknowledgements=(("acknowledged",) * options.acknowledge_public_endpoint
                                              + ("prod-acknowledged",) * options.acknowledge_public_endpoint_in_prod),
            external_autoscaler=scale_to_zero,
            load_balancer=not scale_to_zero,
            allowed_pods=interceptor,
            hpa_behavior=None if scale_to_zero else windows,
            prestop_sleep_seconds=defaults.PRESTOP_SLEEP_SECONDS,
            termination_grace_period_seconds=(defaults.PRESTOP_SLEEP_SECONDS + drain + defaults.TERMINATION_MARGIN_SECONDS
                                              + (defaults.COMPILE_CACHE_FINAL_SAVE_SECONDS if d.compile_cache else 0)),
            compile_cache=d.compile_cache,
            compile_cache_image=(pulled_image(d.compile_cache.image, d.platform, foundation.names)
                                 if d.compile_cache else None),
        ),
        opts=pulumi.ResourceOptions(depends_on=[r for r in (cluster, adapter, keda, foundation.bucket, copy_job,
                                                            compute_class) if r is not None]),
    )
    scaling: dict[str, Any] = {"hpa_metric": workload.hpa_metric_name}
    port_forward = workload.port_forward_command
    base_url = f"http://localhost:{d.container.port}/v1"
    host_header = ""
    in_cluster_url = workload.in_cluster_url
    if scale_to_zero:
        scaler = _scale_to_zero(foundation, cluster, keda, d, workload, windows)
        port_forward = scaler.port_forward_command
        base_url = f"http://localhost:{keda.interceptor_port}/v1"
        host_header = scaler.hosts[0]
        in_cluster_url = scaler.wake_url
        scaling = {"scale_to_zero": _wake_summary(d, scaler)}
    calling: dict[str, Any] = {}
    if api_key is not None:
        host = f" -H \"Host: {host_header}\"" if host_header else ""
        client_headers = f", default_headers={{\"Host\": \"{host_header}\"}}" if host_header else ""
        calling = {
            "api_key_secret": api_key.secret_name,
            "api_key_command": api_key.access_command,
            "curl_example": api_key.access_command.apply(lambda command: (
                f"{port_forward} & curl {base_url}/models{host} "
                f"-H \"Authorization: Bearer $({command})\"")),
            "openai_example": api_key.access_command.apply(lambda command: (
                f"OPENAI_API_KEY=$({command}) python -c 'from openai import OpenAI; "
                f"print(OpenAI(base_url=\"{base_url}\"{client_headers}).models.list())'  # after: {port_forward}")),
        }
    else:
        calling = {"authentication": "none: apiKey is false, any client the NetworkPolicy admits can call it"}
    return {
        "platform": "gke",
        "model": d.config.model,
        "served_model_name": d.container.served_model_name,
        "namespace": workload.namespace,
        "service": workload.service_name,
        "in_cluster_url": in_cluster_url,
        **scaling,
        "estimated_start_seconds": start_seconds,
        "hpa_windows": {"scale_up_seconds": windows.scale_up_window_seconds,
                        "scale_down_seconds": windows.scale_down_window_seconds,
                        "remove_one_replica_every_seconds": windows.scale_down_period_seconds,
                        **({"applies_to": "KEDA's HPA, between 1 and max replicas (to 0 after the idle time)"}
                           if scale_to_zero else {})},
        "drain": (f"preStop sleeps {defaults.PRESTOP_SLEEP_SECONDS} s, then vLLM drains up to {drain} s"
                  if drain else f"preStop sleeps {defaults.PRESTOP_SLEEP_SECONDS} s; vLLM {'.'.join(map(str, d.image.vllm_version))} "
                                "has no --shutdown-timeout, so SIGTERM aborts running requests"),
        **({"capacity_order": list(compute_class.order), "compute_class": compute_class.class_name}
           if compute_class is not None else {}),
        "port_forward_command": port_forward,
        "bucket_access": pulumi.Output.concat(workload.workload_identity_principal, " may ", workload.bucket_access),
        **calling,
    }, monitoring.gke_target(d, stack, cluster.cluster_name, namespace=options.namespace, job=app_name,
                             container=VLLM_CONTAINER)


def _scale_to_zero(foundation: Foundation, cluster, keda, d: ResolvedDeployment, workload, windows):
    """The HTTPScaledObject and ScaledObject that own this deployment's replicas, from zero; ``windows``
    (``stacks/startup.py``) pace KEDA's HPA between 1 and N as they pace the stack's own HPA elsewhere."""
    from components.keda import prometheus_query_url
    from components.keda_scaling import PrometheusQueueTrigger, ScaleToZero, ScaleToZeroArgs
    from stacks.resolved import wake_timings

    stack = foundation.stack
    timings = wake_timings(d)
    assert d.scaling.metric is not None and foundation.names.cluster is not None  # resolve sets both for GKE
    selector = f'cluster="{foundation.names.cluster}",namespace="{workload.namespace}",job="{workload.service_name}"'
    queue = PrometheusQueueTrigger(server_address=prometheus_query_url(stack.project),
                                   query=f"sum({d.scaling.metric}{{{selector}}})", threshold=d.scaling.target,
                                   trigger_authentication=keda.trigger_authentication)
    return ScaleToZero(
        f"{stack.prefix}-{d.name}-scale-to-zero",
        ScaleToZeroArgs(provider=cluster.provider, namespace=workload.namespace,
                        app_name=workload.service_name, service_port=workload.service_port,
                        max_replicas=d.scaling.max_replicas, idle_seconds=timings.idle_seconds,
                        wake_timeout_seconds=timings.wait_seconds,
                        response_header_seconds=timings.response_header_seconds,
                        interceptor_service=keda.interceptor_service, interceptor_namespace=keda.namespace,
                        interceptor_port=keda.interceptor_port, external_scaler_address=keda.external_scaler_address,
                        queue_trigger=queue, hpa_behavior=windows, labels=_deployment_labels(stack, d)),
        opts=pulumi.ResourceOptions(depends_on=[workload, keda]),
    )


def _wake_summary(d: ResolvedDeployment, scaler) -> dict[str, Any]:
    from stacks.resolved import wake_timings

    t = wake_timings(d)
    return {
        "replicas": f"0 to {d.scaling.max_replicas}, owned by KEDA (ScaledObject {scaler.wake_service.removesuffix('-wake')}); "
                    "no HorizontalPodAutoscaler of the stack's own",
        "wake_url": scaler.wake_url,
        "first_request_waits_seconds": t.wait_seconds,
        "first_request": (f"waits in the interceptor up to {t.wait_seconds} s: a node ({t.node_seconds} s budget) "
                          f"and the model's start-up ({t.startup_seconds} s budget); set the client's timeout above it"),
        "idle_seconds_before_zero": t.idle_seconds,
        "scale_up_metric": d.scaling.metric,
    }


def _startup_seconds(d: ResolvedDeployment) -> int:
    """The startup probe budget resolve decided (from the weights' size unless the stack sets one)."""
    assert d.startup is not None  # resolve decides it for every deployment
    return d.startup.seconds
