"""The dashboard and alert policies every committed stack registers, checked with real validators:
the Monitoring API's own types (google-cloud-monitoring-dashboards, google-cloud-monitoring),
a real PromQL parser (promql-parser), and the vLLM metric catalog for each deployment's pinned
version. Everything is read from what the program registered under the mock engine."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from typing import Any

import promql_parser
import pytest
from google.cloud.monitoring_dashboard_v1.types import Dashboard
from google.cloud.monitoring_v3.types import AlertPolicy

from offline.plan import plan
from stacks import monitoring
from stacks.catalog import CATALOG
from stacks.config import AlertThresholds, load
from stacks.resolve import resolve_stack
from stacks.schema import ConfigError
from tests.stacks.test_stacks import STACKS, plan_values, planned, stack_values

DASHBOARD = "gcp:monitoring/dashboard:Dashboard"
POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
PLATFORM_NAMES = {m.promql_name for m in CATALOG.platform_metrics.values()}


def metric_names(query: str) -> set[str]:
    """Every metric a PromQL query selects, from the parsed syntax tree (never a regex on the text)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.add(node.name or "")  # a selector without a name fails check_query
        elif isinstance(node, promql_parser.MatrixSelector):
            walk(node.vector_selector)
        for attr in ("expr", "lhs", "rhs", "param"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, (str, int, float)):
                walk(child)
        for child in getattr(node, "args", None) or []:
            walk(child)

    walk(promql_parser.parse(query))
    return found


def resolved(stack: str):
    values, secrets = stack_values(stack)
    return resolve_stack(load(values, secrets, source=f"Pulumi.{stack}.yaml", stack=stack))


def dashboard(stack: str) -> dict:
    p = planned(stack)
    return json.loads(p.one(DASHBOARD).inputs["dashboardJson"])


def policies(stack: str) -> list[dict]:
    return [dict(r.inputs) for r in planned(stack).of_type(POLICY)]


def sections(board: dict) -> dict[str, list[dict]]:
    """Group title -> the widgets inside its rectangle."""
    tiles = board["mosaicLayout"]["tiles"]
    groups = [t for t in tiles if "collapsibleGroup" in t["widget"]]
    out: dict[str, list[dict]] = {}
    for g in groups:
        out[g["widget"]["title"]] = [t["widget"] for t in tiles if t is not g
                                     and g["yPos"] <= t.get("yPos", 0) < g["yPos"] + g["height"]]
    return out


def check_query(query: str, version, where: str) -> set[str]:
    names = metric_names(query)
    assert names, f"{where}: query names no metric: {query}"
    for name in names:
        base = re.sub(r"_bucket$", "", name)
        if name.startswith("vllm:"):
            assert CATALOG.metric_exported(base, version), \
                f"{where}: {name} is not exported by vLLM {'.'.join(map(str, version))}: {query}"
        else:
            assert base in PLATFORM_NAMES, f"{where}: {name} is neither a vLLM metric nor a catalogued platform metric"
    return names


# ---------------------------------------------------------------------------
# The dashboard.


@pytest.mark.parametrize("stack", STACKS)
def test_dashboard_parses_into_the_monitoring_api_type(stack: str):
    raw = planned(stack).one(DASHBOARD).inputs["dashboardJson"]
    parsed = Dashboard.from_json(raw)  # unknown or mistyped fields raise
    assert parsed.display_name == f"LLM serving: {stack} (llm-{stack})"
    assert len(parsed.mosaic_layout.tiles) == len(json.loads(raw)["mosaicLayout"]["tiles"])


@pytest.mark.parametrize("stack", STACKS)
def test_dashboard_has_a_section_per_deployment_with_its_panels(stack: str):
    r = resolved(stack)
    groups = sections(dashboard(stack))
    assert len(groups) == len(r.deployments), f"Pulumi.{stack}.yaml: groups {list(groups)}"
    for name, d in r.deployments.items():
        [title] = [t for t in groups if t.startswith(f"{name}: ")]
        titles = {w["title"] for w in groups[title]}
        if d.platform.value in ("cloudrun", "gke"):
            for panel in ("vLLM requests running and waiting", "vLLM KV-cache usage (0-1)", "Time to first token",
                          "Time per output token", "Tokens per second"):
                assert panel in titles, f"Pulumi.{stack}.yaml {name}: no {panel!r} panel in {sorted(titles)}"
        expected_platform = {"vertex": "Vertex AI replicas", "cloudrun": "Cloud Run instances",
                             "gke": "GKE nodes in the cluster"}[d.platform.value]
        assert expected_platform in titles, f"Pulumi.{stack}.yaml {name}: no {expected_platform!r} panel"
        logs = [w for w in groups[title] if "text" in w]
        assert logs and "https://console.cloud.google.com/logs" in logs[0]["text"]["content"], \
            f"Pulumi.{stack}.yaml {name}: no logs link"


@pytest.mark.parametrize("stack", STACKS)
def test_every_dashboard_query_parses_and_names_only_exported_metrics(stack: str):
    r = resolved(stack)
    groups = sections(dashboard(stack))
    for name, d in r.deployments.items():
        [title] = [t for t in groups if t.startswith(f"{name}: ")]
        queries = [ds["timeSeriesQuery"]["prometheusQuery"] for w in groups[title] if "xyChart" in w
                   for ds in w["xyChart"]["dataSets"]]
        assert queries, f"Pulumi.{stack}.yaml {name}: no queries"
        named = set().union(*(check_query(q, d.image.vllm_version, f"Pulumi.{stack}.yaml {name}") for q in queries))
        # The names the program chose for this deployment are the ones its charts use.
        if d.platform.value in ("cloudrun", "gke"):
            chosen = {n for n in monitoring.vllm_metric_names(d).values() if n}
            assert chosen <= {re.sub(r"_bucket$", "", n) for n in named}, \
                f"Pulumi.{stack}.yaml {name}: charts miss {chosen - named}"
        else:
            assert not any(n.startswith("vllm:") for n in named), f"Vertex {name} is not scraped; no vLLM series"


def test_deployments_are_selected_by_their_own_labels():
    """Cloud Run series by the sidecar's namespace (the service name), GKE by cluster/namespace/job."""
    groups = sections(dashboard("prod"))
    text = json.dumps(groups)
    assert 'cluster=\\"__run__\\",namespace=\\"llm-prod-gemma-1b\\"' in text
    assert 'cluster=\\"llm-prod-gke\\",namespace=\\"llm-serving\\",job=\\"vllm-llama-70b\\"' in text
    assert 'monitored_resource=\\"aiplatform.googleapis.com/Endpoint\\",endpoint_id=\\"' in text


# ---------------------------------------------------------------------------
# Alert policies.


def api_policy(inputs: dict) -> AlertPolicy:
    body = {k: v for k, v in inputs.items() if k != "project"}  # the provider's field, not the API's
    return AlertPolicy.from_json(json.dumps(body))


@pytest.mark.parametrize("stack", STACKS)
def test_alert_policies_parse_into_the_monitoring_api_type(stack: str):
    found = policies(stack)
    assert found, f"Pulumi.{stack}.yaml: no alert policy"
    for inputs in found:
        policy = api_policy(inputs)
        where = f"Pulumi.{stack}.yaml {policy.display_name}"
        assert policy.severity.name in ("CRITICAL", "ERROR", "WARNING"), where
        assert "What to do:" in policy.documentation.content, f"{where}: documentation says nothing to do"
        assert policy.documentation.mime_type == "text/markdown", where
        [condition] = policy.conditions
        assert condition.condition_prometheus_query_language.query, where


@pytest.mark.parametrize("stack", STACKS)
def test_every_alert_query_parses_and_names_only_exported_metrics(stack: str):
    r = resolved(stack)
    for inputs in policies(stack):
        name = inputs["userLabels"]["deployment"]
        query = inputs["conditions"][0]["conditionPrometheusQueryLanguage"]["query"]
        check_query(query, r.deployments[name].image.vllm_version, f"Pulumi.{stack}.yaml alert {inputs['displayName']}")


EXPECTED_ALERTS = {
    # dev: Cloud Run and the GKE deployment scale to zero (no "no replica" alert), idle alerts on;
    # Vertex has no vLLM series.
    "dev": {"gemma-1b": {"queue", "kv-cache", "ttft-p95", "errors", "idle"},
            "llama-8b": {"no-replica", "errors", "idle"},
            "gemma-1b-gke": {"queue", "kv-cache", "ttft-p95", "errors", "idle"}},
    "prod": {"gemma-1b": {"no-replica", "queue", "kv-cache", "ttft-p95", "errors"},
             "llama-8b": {"no-replica", "errors"},
             "llama-70b": {"no-replica", "queue", "kv-cache", "ttft-p95", "errors"}},
}


@pytest.mark.parametrize("stack", sorted(EXPECTED_ALERTS))
def test_each_deployment_gets_the_alerts_that_apply_to_it(stack: str):
    got: dict[str, set[str]] = {}
    for inputs in policies(stack):
        got.setdefault(inputs["userLabels"]["deployment"], set()).add(inputs["userLabels"]["alert"])
    assert got == EXPECTED_ALERTS[stack], f"Pulumi.{stack}.yaml: alerts {got}"
    severities = {i["userLabels"]["alert"]: i["severity"] for i in policies(stack)}
    assert severities["no-replica"] == ("CRITICAL" if stack == "prod" else "ERROR")


@pytest.mark.parametrize("stack", STACKS)
def test_alerts_notify_the_configured_channels(stack: str):
    p = planned(stack)
    emails = {c.inputs["labels"]["email_address"] for c in p.of_type(CHANNEL)}
    config = resolved(stack).config.settings.monitoring
    assert emails == set(config.notification_emails), f"Pulumi.{stack}.yaml: channels for {emails}"
    assert emails, f"Pulumi.{stack}.yaml: alerts notify nobody"
    for inputs in policies(stack):
        assert len(inputs["notificationChannels"]) == len(emails) + len(config.notification_channels), \
            f"Pulumi.{stack}.yaml {inputs['displayName']}: channels {inputs['notificationChannels']}"


@pytest.mark.parametrize("stack", STACKS)
def test_outputs_give_the_dashboard_url_and_policy_names(stack: str):
    out = planned(stack).result.outputs["monitoring"]
    # The console addresses a dashboard by the last part of its id, projects/<number>/dashboards/<id>.
    assert re.fullmatch(r"https://console\.cloud\.google\.com/monitoring/dashboards/builder/[0-9a-f]{32}\?project=acme-llm-"
                        + stack, out["dashboard_url"]), out["dashboard_url"]
    assert sorted(out["alert_policies"].values()) == sorted(i["displayName"] for i in policies(stack))
    assert set(out["alert_policy_ids"]) == set(out["alert_policies"])


# ---------------------------------------------------------------------------
# Config: thresholds, overrides, validation, switching off.


def with_monitoring(stack: str, monitoring_config: dict | None = None, deployment_alerts: dict | None = None,
                    deployment: str = "gemma-1b") -> tuple[dict, set[str]]:
    values, secrets = stack_values(stack)
    values = copy.deepcopy(values)
    if monitoring_config is not None:
        values["llm-serving:monitoring"] = monitoring_config
    if deployment_alerts is not None:
        values["llm-serving:deployments"][deployment]["alerts"] = deployment_alerts
    return values, secrets


def test_documented_defaults_are_the_defaults_applied():
    docs = {f.name: f.metadata["doc"] for f in dataclasses.fields(AlertThresholds)}
    for key, value in monitoring.DEFAULTS.items():
        assert f"(default {value:g})" in docs[key] or f"(default {value:g}," in docs[key], \
            f"AlertThresholds.{key}: its description does not name the default {value:g}: {docs[key]!r}"


def test_deployment_thresholds_override_the_stack_key_by_key():
    values, secrets = with_monitoring("prod", {"notificationEmails": ["oncall@acme.example"],
                                               "alerts": {"queueWaiting": 4, "ttftP95Seconds": 1.5}},
                                      {"ttftP95Seconds": 0.8})
    stack = load(values, secrets, source="Pulumi.prod.yaml", stack="prod")
    gemma = monitoring.thresholds(stack, stack.deployments["gemma-1b"].alerts)
    other = monitoring.thresholds(stack, stack.deployments["llama-70b"].alerts)
    assert (gemma.ttft_p95_seconds, gemma.queue_waiting, gemma.kv_cache_usage) == (0.8, 4, monitoring.DEFAULTS["kv_cache_usage"])
    assert (other.ttft_p95_seconds, other.queue_waiting) == (1.5, 4)
    assert not gemma.idle, "the idle alert is for dev unless asked for"

    p = plan_values(values, secrets, "prod", "Pulumi.prod.yaml")
    queries = {i["userLabels"]["deployment"] + "/" + i["userLabels"]["alert"]:
               i["conditions"][0]["conditionPrometheusQueryLanguage"]["query"] for i in
               (dict(r.inputs) for r in p.of_type(POLICY))}
    assert queries["gemma-1b/ttft-p95"].endswith("> 0.8"), queries["gemma-1b/ttft-p95"]
    assert queries["llama-70b/ttft-p95"].endswith("> 1.5"), queries["llama-70b/ttft-p95"]
    assert queries["llama-70b/queue"].endswith("> 4"), queries["llama-70b/queue"]


def test_bad_monitoring_values_fail_with_the_key_path():
    values, secrets = with_monitoring("dev", {"notificationChannels": ["12345"], "notificationEmails": ["not-an-email"],
                                              "alerts": {"kvCacheUsage": 95}})
    with pytest.raises(ConfigError) as info:
        load(values, secrets, source="Pulumi.dev.yaml", stack="dev")
    message = str(info.value)
    for key in ("llm-serving:monitoring.notificationChannels", "llm-serving:monitoring.notificationEmails",
                "llm-serving:monitoring.alerts.kvCacheUsage"):
        assert key in message, f"{key} missing from: {message}"
    assert "Pulumi.dev.yaml" in message


def test_monitoring_can_be_switched_off():
    values, secrets = with_monitoring("dev", {"enabled": False})
    p = plan_values(values, secrets, "dev", "Pulumi.dev.yaml")
    assert not p.of_type(DASHBOARD) and not p.of_type(POLICY)
    assert "monitoring" not in p.result.outputs
    containers = p.one("gcp:cloudrunv2/service:Service").inputs["template"]["containers"]
    assert "metrics-collector" not in [c["name"] for c in containers], "no metrics sidecar when monitoring is off"


def test_cloud_run_identity_may_write_metrics_for_its_sidecar():
    p = planned("dev")
    grants = [r for r in p.of_type("gcp:projects/iAMMember:IAMMember") if r.inputs["role"] == "roles/monitoring.metricWriter"
              and "-gke-nodes@" not in r.inputs["member"]]  # GKE nodes write their own system metrics
    assert [g.inputs["member"] for g in grants] == \
        ["serviceAccount:llm-dev-gemma-1b@acme-llm-dev.iam.gserviceaccount.com"], grants


# ---------------------------------------------------------------------------
# Metric names follow the pinned vLLM version.


def test_older_vllm_reads_the_names_it_exports():
    r = resolved("dev")
    d = r.deployments["gemma-1b"]
    old = dataclasses.replace(d, image=dataclasses.replace(d.image, vllm_version=(0, 8, 5)))
    names = monitoring.vllm_metric_names(old)
    assert names["kv_cache_usage"] == "vllm:gpu_cache_usage_perc"  # renamed to kv_cache_usage_perc in 0.9.2
    assert names["time_per_output_token"] == "vllm:time_per_output_token_seconds"
    current = monitoring.vllm_metric_names(d)
    assert current["kv_cache_usage"] == "vllm:kv_cache_usage_perc"


def test_a_metric_the_pinned_vllm_does_not_export_is_a_preview_error():
    values, secrets = stack_values("dev")
    values = copy.deepcopy(values)
    gemma = values["llm-serving:deployments"]["gemma-1b"]
    gemma["image"] = "vllm/vllm-openai:v0.5.4"
    gemma["vllmVersion"] = "0.5.4"
    gemma["cloudrun"]["weights"] = "hub"
    result = plan(values, secrets, stack="dev", source="Pulumi.dev.yaml")
    errors = [c.render() for c in result.checks if c.level == "error"]
    assert result.failed and any("does not export" in e and "requests running" in e for e in errors), errors
