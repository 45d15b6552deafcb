"""ServingDashboard and ServingAlerts under the mock engine: the rendered documents parse into the
Monitoring API's own types, Outputs inside queries are resolved, bad arguments are refused."""

from __future__ import annotations

import dataclasses
import json

import pulumi
import pytest
from google.cloud.monitoring_dashboard_v1.types import Dashboard
from google.cloud.monitoring_v3.types import AlertPolicy

from components.observability import (
    ALERTS_TYPE,
    DASHBOARD_TYPE,
    AlertSpec,
    Chart,
    LogsLinks,
    Section,
    Series,
    ServingAlerts,
    ServingAlertsArgs,
    ServingDashboard,
    ServingDashboardArgs,
    render_alert_policy,
    render_dashboard,
)
from offline.runner import run_under_mocks

SECTIONS = (
    Section("one: a model on Cloud Run", (
        Chart("Requests", (Series('sum(vllm:num_requests_running{namespace="one"})', "running"),
                           Series('sum(vllm:num_requests_waiting{namespace="one"})', "waiting")), unit="{requests}"),
        Chart("KV cache", (Series('max(vllm:kv_cache_usage_perc{namespace="one"})'),), unit="1"),
        Chart("TTFT", (Series('histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m])))', "p95"),), unit="s"),
        LogsLinks("Logs", (("one logs", "https://console.cloud.google.com/logs/query;query=x?project=p"),)),
    )),
    Section("two: another", (Chart("Replicas", (Series("sum(r)"),)),)),
)
QUEUE = AlertSpec(key="one-queue", display_name="one: queue", query='avg(vllm:num_requests_waiting{namespace="one"}) > 10',
                  duration_seconds=600, severity="WARNING", documentation="Queue.\n\nWhat to do: add replicas.",
                  labels={"deployment": "one"})


def test_rendered_dashboard_is_a_valid_monitoring_dashboard():
    document = render_dashboard("LLM serving: test", SECTIONS)
    # Plain strings throughout except the logs text, which the component resolves; resolve it here.
    document = json.loads(json.dumps(document, default=lambda o: "resolved"))
    parsed = Dashboard.from_json(json.dumps(document))
    tiles = parsed.mosaic_layout.tiles
    groups = [t for t in tiles if "collapsible_group" in t.widget]
    assert [g.widget.title for g in groups] == ["one: a model on Cloud Run", "two: another"]
    for tile in tiles:
        assert tile.x_pos + tile.width <= 48, f"{tile.widget.title}: beyond the 48-column grid"
    # Each section's widgets lie inside its group's rectangle and groups do not overlap.
    first, second = groups
    assert first.y_pos + first.height <= second.y_pos
    charts = [t for t in tiles if "xy_chart" in t.widget]
    assert [c.widget.title for c in charts] == ["Requests", "KV cache", "TTFT", "Replicas"]
    assert charts[0].widget.xy_chart.data_sets[1].time_series_query.prometheus_query.startswith("sum(vllm:num_requests_waiting")


def test_rendered_policy_is_a_valid_alert_policy():
    policy = AlertPolicy.from_json(json.dumps(render_alert_policy(QUEUE, ["projects/p/notificationChannels/1"])))
    assert policy.severity == AlertPolicy.Severity.WARNING
    condition = policy.conditions[0].condition_prometheus_query_language
    assert condition.query == QUEUE.query and condition.duration.total_seconds() == 600
    assert policy.documentation.mime_type == "text/markdown"
    assert list(policy.notification_channels) == ["projects/p/notificationChannels/1"]
    assert policy.alert_strategy.auto_close.total_seconds() == 1800


def run_components(sections=SECTIONS, policies=(QUEUE,), **alert_kwargs):
    def program():
        board = ServingDashboard("obs", ServingDashboardArgs(project="mock-project", display_name="LLM serving: t",
                                                             sections=sections))
        alerts = ServingAlerts("obs-alerts", ServingAlertsArgs(project="mock-project", policies=tuple(policies),
                                                               **alert_kwargs))
        pulumi.export("url", board.dashboard_url)
        pulumi.export("policies", alerts.policy_names)

    return run_under_mocks(program)


def test_outputs_inside_queries_are_resolved_before_registration():
    endpoint = pulumi.Output.from_input("4242")
    sections = (Section("v: vertex", (Chart("Replicas", (Series(endpoint.apply(lambda e: f'sum(r{{endpoint_id="{e}"}})')),)),)),)
    policy = dataclasses.replace(QUEUE, query=endpoint.apply(lambda e: f'absent(r{{endpoint_id="{e}"}})'))
    result = run_components(sections, (policy,))
    board = json.loads(result.named("obs-dashboard").inputs["dashboardJson"])
    queries = [t["widget"]["xyChart"]["dataSets"][0]["timeSeriesQuery"]["prometheusQuery"]
               for t in board["mosaicLayout"]["tiles"] if "xyChart" in t["widget"]]
    assert queries == ['sum(r{endpoint_id="4242"})']
    registered = result.named("obs-alerts-one-queue").inputs
    assert registered["conditions"][0]["conditionPrometheusQueryLanguage"]["query"] == 'absent(r{endpoint_id="4242"})'


def test_email_channels_are_created_and_every_policy_notifies_all_channels():
    existing = "projects/mock-project/notificationChannels/77"
    result = run_components(notification_emails=("oncall@example.com",), notification_channels=(existing,))
    [channel] = result.of_type("gcp:monitoring/notificationChannel:NotificationChannel")
    assert channel.inputs["type"] == "email" and channel.inputs["labels"] == {"email_address": "oncall@example.com"}
    policy = result.named("obs-alerts-one-queue")
    assert policy.inputs["notificationChannels"][0] == existing
    assert policy.inputs["notificationChannels"][1].startswith("projects/mock-project/notificationChannels/")
    assert result.outputs["url"].value.startswith("https://console.cloud.google.com/monitoring/dashboards/builder/")
    assert set(result.outputs["policies"].value) == {"one-queue"}


def test_children_are_parented_to_their_components():
    result = run_components(notification_emails=("oncall@example.com",))
    [board] = result.of_type(DASHBOARD_TYPE)
    [alerts] = result.of_type(ALERTS_TYPE)
    assert [r.name for r in result.children_of(board)] == ["obs-dashboard"]
    assert {r.name for r in result.children_of(alerts)} == {"obs-alerts-one-queue", "obs-alerts-email-oncall-example-com"}


@pytest.mark.parametrize("change, field", [
    ({"policies": (dataclasses.replace(QUEUE, severity="PAGE"),)}, "severity"),
    ({"policies": (QUEUE, QUEUE)}, "used twice"),
    ({"policies": (dataclasses.replace(QUEUE, documentation=" "),)}, "documentation"),
    ({"notification_emails": ("oncall",)}, "notification_emails"),
    ({"notification_channels": ("77",)}, "notification_channels"),
])
def test_bad_alert_arguments_are_refused_with_the_field(change, field):
    with pytest.raises(ValueError) as info:
        run_components(**{"policies": (QUEUE,), **change})
    assert field in str(info.value)


def test_empty_dashboard_is_refused():
    with pytest.raises(ValueError, match="sections"):
        run_components(sections=())
