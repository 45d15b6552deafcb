"""What prod protects, by resource type, with the reason; and a failure for any resource type the
program starts registering that this file has not classified as stateful or replaceable."""

from __future__ import annotations

from tests.stacks.test_stacks import planned

# Types whose loss costs data or an outage: every instance is `protect`ed in prod.
PROTECTED = {
    "gcp:storage/bucket:Bucket": "weights, adapters and compile caches",
    "gcp:secretmanager/secret:Secret": "tokens and API keys clients hold",
    "gcp:secretmanager/secretVersion:SecretVersion": "the token or key value itself",
    "random:index/randomPassword:RandomPassword": "a new value locks every client out",
    "gcp:artifactregistry/repository:Repository": "the images prod runs by digest, and the Docker Hub proxy GKE pulls through",
    "gcp:serviceaccount/account:Account": "identities and their grants; a deleted id is unusable for 30 days",
    "gcp:container/cluster:Cluster": "the serving cluster",
    "gcp:container/nodePool:NodePool": "the accelerator capacity (reservations, warm nodes)",
    "gcp:vertex/aiEndpointWithModelGardenDeployment:AiEndpointWithModelGardenDeployment":
        "a replacement gives callers a new endpoint id and URLs (and downtime when it deletes first)",
    "kubernetes:core/v1:Namespace": "deleting it deletes every workload and Secret in it",
    "kubernetes:core/v1:Secret": "the token and API key the pods read",
    "gcp:compute/router:Router": "private nodes lose egress (weight downloads) without it",
    "gcp:compute/routerNat:RouterNat": "private nodes lose egress (weight downloads) without it",
}
# Types protected on the provider side instead (`deletionProtection`), so updates stay in place.
DELETION_PROTECTED = {"gcp:cloudrunv2/service:Service": "a Cloud Run service with GPUs"}
# Types that hold no state: pulumi up recreates them as they were.
REPLACEABLE = {
    "command:local:Command": "an image build; the image it pushed stays in the protected repository",
    "gcp:cloudrunv2/job:Job": "the weights-copy job, stateless: the copy stays in the protected bucket and a rerun is a no-op",
    "gcp:storage/bucketObject:BucketObject": "the copy job's code, uploaded again from the repository",
    "gcp:projects/service:Service": "API enablement, left enabled on destroy",
    "gcp:projects/iAMMember:IAMMember": "additive grant",
    "gcp:storage/bucketIAMMember:BucketIAMMember": "additive grant",
    "gcp:secretmanager/secretIamMember:SecretIamMember": "additive grant",
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember": "additive grant",
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": "additive grant",
    "kubernetes:apps/v1:Deployment": "recreated from the spec; weights stay in the bucket",
    "kubernetes:core/v1:Service": "recreated from the spec (an internal LB address may change)",
    "kubernetes:core/v1:ServiceAccount": "recreated with the same name, so Workload Identity grants still match",
    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler": "recreated from the spec",
    "kubernetes:policy/v1:PodDisruptionBudget": "recreated from the spec",
    "kubernetes:cloud.google.com/v1:ComputeClass": "recreated from the spec; nodes GKE created for it stay until scaled down",
    "kubernetes:monitoring.googleapis.com/v1:PodMonitoring": "recreated from the spec",
    "kubernetes:networking.k8s.io/v1:NetworkPolicy": "recreated from the spec",
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole": "recreated from the spec",
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding": "recreated from the spec",
    "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding": "recreated from the spec",
    "kubernetes:apiregistration.k8s.io/v1:APIService": "recreated from the spec",
    "pulumi:providers:kubernetes": "a provider, not a cloud resource",
    "gcp:monitoring/dashboard:Dashboard": "recreated from the spec; the metrics it shows are kept by Monitoring",
    "gcp:monitoring/alertPolicy:AlertPolicy": "recreated from the spec (open incidents close)",
    "gcp:monitoring/notificationChannel:NotificationChannel": "an email channel, recreated from config without verification",
}


def test_prod_protects_every_stateful_resource_and_classifies_every_type():
    p = planned("prod")
    unclassified = sorted({r.type for r in p.registrations if not r.type.startswith("llm-serving:")}
                          - set(PROTECTED) - set(DELETION_PROTECTED) - set(REPLACEABLE))
    assert not unclassified, (f"prod registers resource types no one has judged: {unclassified}. Add each to "
                              "PROTECTED (and protect it in prod) or REPLACEABLE with the reason")
    unprotected = [f"{r.type} {r.name}" for r in p.registrations if r.type in PROTECTED and not p.protect[r.name]]
    assert not unprotected, f"prod leaves stateful resources unprotected: {unprotected}"
    for r in p.registrations:
        if r.type in DELETION_PROTECTED:
            assert r.inputs.get("deletionProtection") is True, f"{r.name}: deletionProtection off in prod"
    protected = sorted({r.type.rsplit(":", 1)[-1] for r in p.registrations if r.type in PROTECTED})
    print("prod protects:", ", ".join(protected))
    assert {"Bucket", "Repository", "Account", "Namespace", "Secret", "AiEndpointWithModelGardenDeployment",
            "Cluster"} <= set(protected), protected


def test_dev_protects_nothing():
    p = planned("dev")
    protected = [r.name for r in p.registrations if p.protect.get(r.name)]
    assert not protected, f"dev protects {protected}; dev stacks are meant to be torn down freely"
