"""What the stack's dashboard and alert policies show, per deployment, decided from its resolved config.

Every query is PromQL (https://cloud.google.com/monitoring/promql). vLLM's own metrics are read
where Managed Service for Prometheus collects them: on GKE by the workload's PodMonitoring
(resource labels ``cluster``, ``namespace``, ``job`` = the PodMonitoring name), on Cloud Run by
the metrics sidecar (``cluster="__run__"``, ``namespace`` = the service name; see
components/cloudrun.py). Vertex AI's Model Garden container is not scraped, so Vertex
deployments show and alert on the platform's metrics only.

vLLM metric names come from the catalog by role for the deployment's pinned vLLM version
(``Catalog.metric_for_role``); a role the version does not export is a preview error
(``monitoring_checks``). Google Cloud metric names come from data/platform_metrics.yaml.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import pulumi

from components.observability import AlertSpec, Chart, LogsLinks, Section, Series
from stacks import defaults
from stacks.catalog import CATALOG
from stacks.config import AlertThresholds, Environment, Platform, StackConfig

if TYPE_CHECKING:
    from stacks.findings import Findings
    from stacks.resolved import ResolvedDeployment

RATE_WINDOW = "5m"
VLLM_PLATFORMS = (Platform.CLOUDRUN, Platform.GKE)  # where vLLM's /metrics is scraped
CLOUD_RUN_CLUSTER = "__run__"  # the sidecar's `cluster` label on Cloud Run (run-gmp-sidecar README)


@dataclass(frozen=True)
class Thresholds:
    """Alert thresholds with every default decided."""

    queue_waiting: float
    kv_cache_usage: float
    error_ratio: float
    ttft_p95_seconds: float
    sustained_minutes: int
    idle: bool
    idle_minutes: int


# Field -> default (stacks/defaults.py; the config's descriptions quote the same constants).
DEFAULTS = {
    "queue_waiting": defaults.ALERT_QUEUE_WAITING,
    "kv_cache_usage": defaults.ALERT_KV_CACHE_USAGE,
    "error_ratio": defaults.ALERT_ERROR_RATIO,
    "ttft_p95_seconds": defaults.ALERT_TTFT_P95_SECONDS,
    "sustained_minutes": defaults.ALERT_SUSTAINED_MINUTES,
    "idle_minutes": defaults.ALERT_IDLE_MINUTES,
}


def thresholds(stack: StackConfig, alerts: Optional[AlertThresholds]) -> Thresholds:
    """Deployment value, else the stack's, else the default; the idle alert defaults to dev only."""
    stack_alerts = stack.settings.monitoring.alerts

    def pick(key: str, default):
        for source in (alerts, stack_alerts):
            value = getattr(source, key) if source is not None else None
            if value is not None:
                return value
        return default

    values = {key: pick(key, default) for key, default in DEFAULTS.items()}
    return Thresholds(idle=pick("idle", stack.environment is Environment.DEV), **values)


def vllm_metric_names(d: ResolvedDeployment) -> dict[str, Optional[str]]:
    """Role -> the vLLM metric this deployment's dashboard and alerts read (None: not exported)."""
    return {role: CATALOG.metric_for_role(role, d.image.vllm_version) for role in CATALOG.metric_roles}


def monitoring_checks(d: ResolvedDeployment, stack: StackConfig, out: Findings) -> None:
    if not stack.settings.monitoring.enabled or d.platform not in VLLM_PLATFORMS:
        return
    version = ".".join(map(str, d.image.vllm_version))
    for role, name in vllm_metric_names(d).items():
        if name is None:
            candidates = " or ".join(CATALOG.metric_roles[role])
            out.error(f"the dashboard and alerts read {role.replace('_', ' ')} from {candidates}, which vLLM {version} "
                      f"({d.image.ref}) does not export; pin an image whose vLLM exports it, or set "
                      "llm-serving:monitoring.enabled to false")


# ---------------------------------------------------------------------------
# Query building. Selectors may be Outputs (ids known after create); queries follow them.


def _query(selector: pulumi.Input[str], build: Callable[[str], str]) -> pulumi.Input[str]:
    if isinstance(selector, str):
        return build(selector)
    return pulumi.Output.all(selector).apply(lambda values: build(values[0]))


def _matchers(**labels: pulumi.Input[str]) -> pulumi.Input[str]:
    """`{a="x",b="y"}` from label values, any of which may be an Output."""
    def render(values: Mapping[str, str]) -> str:
        return "{" + ",".join(f'{k}="{v}"' for k, v in values.items()) + "}"
    if all(isinstance(v, str) for v in labels.values()):
        return render(labels)  # type: ignore[arg-type]
    return pulumi.Output.all(**labels).apply(render)


def _quantile(q: float, bucket: str, selector: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({bucket}_bucket{selector}[{RATE_WINDOW}])))"


def _with_label(selector: str, label: str) -> str:
    return selector[:-1] + "," + label + "}"


@dataclass(frozen=True)
class Target:
    """Where one deployment's metrics and logs are found."""

    name: str
    platform: Platform
    title: str  # section title
    vllm_selector: Optional[pulumi.Input[str]]  # label matchers of its vLLM series; None when not scraped
    platform_selector: pulumi.Input[str]  # label matchers of its Google Cloud metrics
    logs_url: pulumi.Input[str]
    tpu: bool = False
    node_selector: Optional[pulumi.Input[str]] = None  # GKE: the cluster's nodes


def cloudrun_target(d: ResolvedDeployment, stack: StackConfig, service_name: str) -> Target:
    return Target(
        name=d.name, platform=d.platform, title=f"{d.name}: {d.config.model} on Cloud Run ({d.hardware.label})",
        vllm_selector=_matchers(cluster=CLOUD_RUN_CLUSTER, namespace=service_name),
        platform_selector=_matchers(monitored_resource="cloud_run_revision", service_name=service_name,
                                    location=stack.region),
        logs_url=logs_url(stack.project, f'resource.type="cloud_run_revision"\nresource.labels.service_name="{service_name}"'),
    )


def gke_target(d: ResolvedDeployment, stack: StackConfig, cluster_name: pulumi.Input[str], namespace: str,
               job: str, container: str) -> Target:
    query = _query(cluster_name,
                   lambda c: f'resource.type="k8s_container"\nresource.labels.cluster_name="{c}"\n'
                             f'resource.labels.namespace_name="{namespace}"\nresource.labels.container_name="{container}"')
    return Target(
        name=d.name, platform=d.platform, title=f"{d.name}: {d.config.model} on GKE ({d.hardware.label})",
        vllm_selector=_matchers(cluster=cluster_name, namespace=namespace, job=job),
        platform_selector=_matchers(monitored_resource="k8s_container", cluster_name=cluster_name,
                                    namespace_name=namespace, container_name=container),
        logs_url=_query(query, lambda q: logs_url(stack.project, q)),
        tpu=d.hardware.accelerator.kind == "tpu",
        node_selector=_matchers(monitored_resource="k8s_node", cluster_name=cluster_name),
    )


def vertex_target(d: ResolvedDeployment, stack: StackConfig, endpoint_id: pulumi.Input[str],
                  endpoint_logs_url: pulumi.Input[str]) -> Target:
    return Target(
        name=d.name, platform=d.platform, title=f"{d.name}: {d.config.model} on Vertex AI ({d.hardware.label})",
        vllm_selector=None,
        platform_selector=_matchers(monitored_resource="aiplatform.googleapis.com/Endpoint", endpoint_id=endpoint_id,
                                    location=stack.region),
        logs_url=endpoint_logs_url,
    )


def logs_url(project: str, query: str) -> str:
    """A Logs Explorer link running ``query`` in ``project``."""
    return (f"https://console.cloud.google.com/logs/query;query={urllib.parse.quote(query, safe='')}"
            f"?project={project}")


def _pm(role: str) -> str:
    return CATALOG.platform_metrics[role].promql_name


# ---------------------------------------------------------------------------
# Dashboard.


def section(d: ResolvedDeployment, target: Target) -> Section:
    widgets: list[Chart | LogsLinks] = []
    if target.vllm_selector is not None:
        widgets += _vllm_charts(vllm_metric_names(d), target.vllm_selector)
    widgets += _platform_charts(target)
    widgets.append(LogsLinks(title="Logs", links=((f"{target.name} logs in Logs Explorer", target.logs_url),)))
    return Section(title=target.title, widgets=tuple(widgets))


def _vllm_charts(m: Mapping[str, Optional[str]], sel: pulumi.Input[str]) -> list[Chart]:
    def q(build: Callable[[str], str]) -> pulumi.Input[str]:
        return _query(sel, build)

    run, wait, kv = m["requests_running"], m["requests_waiting"], m["kv_cache_usage"]
    ttft, tpot = m["time_to_first_token"], m["time_per_output_token"]
    prompt, gen, preempt = m["prompt_tokens"], m["generation_tokens"], m["preemptions"]
    finished = str(m["finished_requests"])
    return [
        Chart("vLLM requests running and waiting", (
            Series(q(lambda s: f"sum({run}{s})"), "running"),
            Series(q(lambda s: f"sum({wait}{s})"), "waiting"),
        ), unit="{requests}"),
        Chart("vLLM KV-cache usage (0-1)", (
            Series(q(lambda s: f"max({kv}{s})"), "fullest replica"),
            Series(q(lambda s: f"avg({kv}{s})"), "average"),
        ), unit="1"),
        Chart("Time to first token", (
            Series(q(lambda s: _quantile(0.5, str(ttft), s)), "p50"),
            Series(q(lambda s: _quantile(0.95, str(ttft), s)), "p95"),
        ), unit="s"),
        Chart("Time per output token", (
            Series(q(lambda s: _quantile(0.5, str(tpot), s)), "p50"),
            Series(q(lambda s: _quantile(0.95, str(tpot), s)), "p95"),
        ), unit="s"),
        Chart("Tokens per second", (
            Series(q(lambda s: f"sum(rate({prompt}{s}[{RATE_WINDOW}]))"), "prompt"),
            Series(q(lambda s: f"sum(rate({gen}{s}[{RATE_WINDOW}]))"), "generation"),
        ), unit="{tokens}/s"),
        Chart("Preemptions per second (KV cache full: sequences recomputed)", (
            Series(q(lambda s: f"sum(rate({preempt}{s}[{RATE_WINDOW}]))"), "preemptions"),
        ), unit="1/s"),
        Chart("vLLM requests finished with an error (ratio)", (
            Series(q(lambda s: _engine_error_ratio(finished, s)), "error / all"),
        ), unit="1"),
    ]


def _platform_charts(t: Target) -> list[Chart]:
    def q(build: Callable[[str], str], selector: Optional[pulumi.Input[str]] = None) -> pulumi.Input[str]:
        return _query(selector if selector is not None else t.platform_selector, build)

    if t.platform is Platform.VERTEX:
        latency, replicas, duty = _pm("vertex_prediction_latency"), _pm("vertex_replicas"), _pm("vertex_duty_cycle")
        return [
            Chart("Vertex AI prediction latency", (
                Series(q(lambda s: _quantile(0.5, latency, s)), "p50"),
                Series(q(lambda s: _quantile(0.95, latency, s)), "p95"),
            ), unit="ms"),
            Chart("Vertex AI replicas", (Series(q(lambda s: f"sum({replicas}{s})"), "replicas"),), unit="{replicas}"),
            Chart("Vertex AI accelerator duty cycle", (Series(q(lambda s: f"avg({duty}{s})"), "average"),), unit="%"),
            Chart("Vertex AI server-error ratio", (Series(q(_vertex_error_ratio), "5xx / all"),), unit="1"),
        ]
    if t.platform is Platform.CLOUDRUN:
        instances, latency, gpu = _pm("cloudrun_instances"), _pm("cloudrun_request_latency"), _pm("cloudrun_gpu_utilization")
        return [
            Chart("Cloud Run instances", (Series(q(lambda s: f"sum by (state) ({instances}{s})"), "{{state}}"),),
                  unit="{instances}"),
            Chart("Cloud Run request latency", (
                Series(q(lambda s: _quantile(0.5, latency, s)), "p50"),
                Series(q(lambda s: _quantile(0.95, latency, s)), "p95"),
            ), unit="ms"),
            Chart("Cloud Run GPU utilization", (
                Series(q(lambda s: _quantile(0.5, gpu, s)), "median instance"),
                Series(q(lambda s: _quantile(0.95, gpu, s)), "p95 instance"),
            ), unit="1"),
            Chart("Cloud Run server-error ratio", (Series(q(_cloudrun_error_ratio), "5xx / all"),), unit="1"),
        ]
    duty, tensorcore, nodes = _pm("gke_accelerator_duty_cycle"), _pm("gke_tensorcore_utilization"), _pm("gke_node_cores")
    utilization = [Series(q(lambda s: f"avg({duty}{s})"), "duty cycle")]
    if t.tpu:
        utilization.append(Series(q(lambda s: f"avg({tensorcore}{s})"), "TensorCore utilization"))
    return [
        Chart("GKE accelerator utilization", tuple(utilization), unit="%"),
        Chart("GKE nodes in the cluster", (
            Series(q(lambda s: f"count(count by (node_name) ({nodes}{s}))", t.node_selector), "nodes"),
        ), unit="{nodes}"),
    ]


def _cloudrun_error_ratio(s: str) -> str:
    requests = _pm("cloudrun_requests")
    errors = _with_label(s, 'response_code_class="5xx"')
    return (f"sum(rate({requests}{errors}[{RATE_WINDOW}])) / sum(rate({requests}{s}[{RATE_WINDOW}]))")


def _engine_error_ratio(finished: str, s: str) -> str:
    errors = _with_label(s, 'finished_reason="error"')
    return f"sum(rate({finished}{errors}[{RATE_WINDOW}])) / sum(rate({finished}{s}[{RATE_WINDOW}]))"


def _vertex_error_ratio(s: str) -> str:
    responses = _pm("vertex_responses")
    errors = _with_label(s, 'response_code=~"5.."')
    return (f"sum(rate({responses}{errors}[{RATE_WINDOW}])) / sum(rate({responses}{s}[{RATE_WINDOW}]))")


# ---------------------------------------------------------------------------
# Alerts.


def alerts(d: ResolvedDeployment, stack: StackConfig, target: Target) -> list[AlertSpec]:
    t = thresholds(stack, d.config.alerts)
    prefix, name = stack.prefix, d.name
    sustained = t.sustained_minutes * 60
    labels = {"deployment": name}
    m = vllm_metric_names(d)
    where = f"`{name}` ({d.config.model} on {d.platform.value}, stack {stack.stack})"
    specs: list[AlertSpec] = []

    def add(key: str, title: str, query: pulumi.Input[str], duration: int, severity: str, doc: str) -> None:
        specs.append(AlertSpec(key=f"{name}-{key}", display_name=f"{prefix} {name}: {title}", query=query,
                               duration_seconds=duration, severity=severity, documentation=doc,
                               labels={**labels, "alert": key}))

    outage = "CRITICAL" if stack.environment is Environment.PROD else "ERROR"
    if d.platform is Platform.VERTEX:
        replicas = _pm("vertex_replicas")
        add("no-replica", "no ready replica",
            _query(target.platform_selector, lambda s: f"(sum({replicas}{s}) < 1) or absent({replicas}{s})"),
            sustained, outage,
            f"No ready Vertex AI replica has served {where} for {t.sustained_minutes} minutes: requests fail.\n\n"
            "What to do: open the endpoint in the Vertex AI console and its logs (the dashboard's Logs link); a "
            "replica that keeps restarting usually failed to load the model (out of memory, a gated model without "
            "a token). Redeploy with `pulumi up` once fixed.")
    elif d.scaling.min_replicas >= 1 and target.vllm_selector is not None:
        running = m["requests_running"]
        add("no-replica", "no replica reporting",
            _query(target.vllm_selector, lambda s: f"absent({running}{s})"), sustained, outage,
            f"No replica of {where} has reported vLLM metrics for {t.sustained_minutes} minutes although at least "
            f"{d.scaling.min_replicas} should run: the server is down or not ready.\n\n"
            "What to do: read the deployment's logs (dashboard Logs link) for the start-up error; on GKE also "
            "`kubectl get pods` in its namespace; on Cloud Run the revision's status. A scrape problem looks the "
            "same: check the metrics sidecar (Cloud Run) or the PodMonitoring (GKE).")

    if target.vllm_selector is not None:
        wait, kv, ttft = m["requests_waiting"], m["kv_cache_usage"], m["time_to_first_token"]
        add("queue", f"request queue above {t.queue_waiting:g} per replica",
            _query(target.vllm_selector, lambda s: f"avg({wait}{s}) > {t.queue_waiting:g}"), sustained, "WARNING",
            f"More than {t.queue_waiting:g} requests per replica have waited in vLLM's queue for "
            f"{t.sustained_minutes} minutes on {where}: the deployment is not keeping up and latency grows.\n\n"
            "What to do: raise `scaling.maxReplicas` (and quota) if replicas are at the maximum; otherwise check "
            "why autoscaling did not add one. Lower the threshold with `monitoring.alerts.queueWaiting`.")
        add("kv-cache", f"KV cache above {t.kv_cache_usage:.0%}",
            _query(target.vllm_selector, lambda s: f"max({kv}{s}) > {t.kv_cache_usage:g}"), sustained, "WARNING",
            f"The KV cache of a replica of {where} has been more than {t.kv_cache_usage:.0%} full for "
            f"{t.sustained_minutes} minutes: vLLM preempts and recomputes sequences (see the Preemptions chart).\n\n"
            "What to do: add replicas, lower `vllm.maxNumSeqs` or `vllm.maxModelLen`, or use more accelerator memory "
            "per replica (the plan's fit table shows the KV capacity).")
        add("ttft-p95", f"time to first token p95 above {t.ttft_p95_seconds:g} s",
            _query(target.vllm_selector, lambda s: f"{_quantile(0.95, str(ttft), s)} > {t.ttft_p95_seconds:g}"),
            sustained, "WARNING",
            f"95% of requests to {where} should see their first token within {t.ttft_p95_seconds:g} s; for "
            f"{t.sustained_minutes} minutes they have not.\n\n"
            "What to do: look at the queue and KV-cache charts: a queue means too few replicas; a full cache means "
            "too many long sequences per replica. Long prompts raise TTFT too (prefill). Change the objective with "
            "`monitoring.alerts.ttftP95Seconds`.")

    if d.platform is Platform.GKE and target.vllm_selector is not None:
        # No load balancer in front of every GKE deployment: vLLM's own count of requests it failed.
        finished = str(m["finished_requests"])
        error_query = _query(target.vllm_selector, lambda s: f"({_engine_error_ratio(finished, s)}) > {t.error_ratio:g}")
        failed = "failed inside vLLM (finished_reason error)"
    else:
        ratio = _cloudrun_error_ratio if d.platform is Platform.CLOUDRUN else _vertex_error_ratio
        error_query = _query(target.platform_selector, lambda s: f"({ratio(s)}) > {t.error_ratio:g}")
        failed = "were answered with a server error (5xx)"
    add("errors", f"server errors above {t.error_ratio:.0%}", error_query, 300, "ERROR",
        f"More than {t.error_ratio:.0%} of requests to {where} {failed} over 5 minutes.\n\n"
        "What to do: read the logs (dashboard Logs link): out-of-memory restarts, requests longer than "
        "`vllm.maxModelLen`, or timeouts (Cloud Run's `requestTimeoutSeconds`). Change the ratio with "
        "`monitoring.alerts.errorRatio`.")

    if t.idle:
        window = f"{t.idle_minutes}m"
        if target.vllm_selector is not None:
            gen = m["generation_tokens"]
            idle_query = _query(target.vllm_selector, lambda s: f"sum(increase({gen}{s}[{window}])) < 1")
        else:
            duty = _pm("vertex_duty_cycle")
            idle_query = _query(target.platform_selector, lambda s: f"max(max_over_time({duty}{s}[{window}])) < 1")
        add("idle", f"accelerator idle for {t.idle_minutes} min", idle_query, 0, "WARNING",
            f"A replica of {where} has run for {t.idle_minutes} minutes without generating a token: its "
            f"{d.hardware.accelerator.key} accelerators are billed for nothing.\n\n"
            "What to do: set `scaling.minReplicas` to 0 where the platform allows it (Cloud Run), or remove the "
            "deployment from the stack while unused. Turn this alert off with `monitoring.alerts.idle: false`.")
    return specs
