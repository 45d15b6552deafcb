"""A Cloud Monitoring dashboard and alert policies for model-serving deployments, from typed specs.

The dashboard is described with small dataclasses (``Chart``, ``LogsLinks``, ``Section``) and
rendered to the Monitoring API's dashboard JSON (``MosaicLayout`` with a collapsible group per
section; https://cloud.google.com/monitoring/api/ref_v3/rest/v1/projects.dashboards). Every
chart and every alert condition is a PromQL query, the one language that reads both vLLM's
Prometheus metrics (Managed Service for Prometheus) and Google Cloud system metrics
(https://cloud.google.com/monitoring/promql). Alert policies are rendered to the
``AlertPolicy`` API shape (https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.alertPolicies)
and registered field for field.

Query strings may be ``pulumi.Input[str]`` (a Vertex AI endpoint id is only known after it is
created); the rendered documents are resolved with ``Output.from_input`` before registration.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_gcp as gcp

DASHBOARD_TYPE = "llm-serving:observability:ServingDashboard"
ALERTS_TYPE = "llm-serving:observability:ServingAlerts"

GRID_COLUMNS = 48  # MosaicLayout width
CHART_WIDTH = 24  # two charts per row
CHART_HEIGHT = 16
TEXT_HEIGHT = 8
SEVERITIES = ("CRITICAL", "ERROR", "WARNING")
_CHANNEL_ID = re.compile(r"projects/[^/]+/notificationChannels/[0-9]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


# ---------------------------------------------------------------------------
# Dashboard specs.


@dataclass(frozen=True)
class Series:
    """One line on a chart: a PromQL query and its legend."""

    query: pulumi.Input[str]
    legend: str = ""  # legend template, e.g. "p95" or "{{state}}"


@dataclass(frozen=True)
class Chart:
    """A line chart of one or more PromQL series."""

    title: str
    series: tuple[Series, ...]
    unit: str = ""  # UCUM unit of the values, e.g. "s", "1", "{requests}"
    y_label: str = ""


@dataclass(frozen=True)
class LogsLinks:
    """A markdown tile of links (Logs Explorer queries for the deployment)."""

    title: str
    links: tuple[tuple[str, pulumi.Input[str]], ...]  # (label, URL)


Widget = Chart | LogsLinks


@dataclass(frozen=True)
class Section:
    """A collapsible group of widgets, one per deployment."""

    title: str
    widgets: tuple[Widget, ...]


def _widget(widget: Widget) -> dict[str, Any]:
    if isinstance(widget, LogsLinks):
        lines: list[Any] = []
        for label, url in widget.links:
            lines.append(pulumi.Output.concat("- [", label, "](", url, ")"))
        content = pulumi.Output.all(*lines).apply(lambda parts: "\n".join(parts))
        return {"title": widget.title, "text": {"content": content, "format": "MARKDOWN"}}
    data_sets = []
    for s in widget.series:
        query: dict[str, Any] = {"prometheusQuery": s.query}
        if widget.unit:
            query["unitOverride"] = widget.unit
        data_set: dict[str, Any] = {"timeSeriesQuery": query, "plotType": "LINE"}
        if s.legend:
            data_set["legendTemplate"] = s.legend
        data_sets.append(data_set)
    chart: dict[str, Any] = {"dataSets": data_sets}
    if widget.y_label:
        chart["yAxis"] = {"label": widget.y_label, "scale": "LINEAR"}
    return {"title": widget.title, "xyChart": chart}


def render_dashboard(display_name: str, sections: Sequence[Section]) -> dict[str, Any]:
    """The dashboard in the Monitoring API's JSON shape (values may still be Outputs)."""
    tiles: list[dict[str, Any]] = []
    y = 0
    for section in sections:
        header_y = y
        x, row_height = 0, 0
        placed = []
        for widget in section.widgets:
            width = GRID_COLUMNS if isinstance(widget, LogsLinks) else CHART_WIDTH
            height = TEXT_HEIGHT if isinstance(widget, LogsLinks) else CHART_HEIGHT
            if x + width > GRID_COLUMNS:
                y, x, row_height = y + row_height, 0, 0
            placed.append({"xPos": x, "yPos": y, "width": width, "height": height, "widget": _widget(widget)})
            x += width
            row_height = max(row_height, height)
        y += row_height
        # The group's rectangle spans its widgets: that is what puts them in the group.
        tiles.append({"xPos": 0, "yPos": header_y, "width": GRID_COLUMNS, "height": max(1, y - header_y),
                      "widget": {"title": section.title, "collapsibleGroup": {"collapsed": False}}})
        tiles.extend(placed)
    return {"displayName": display_name, "mosaicLayout": {"columns": GRID_COLUMNS, "tiles": tiles}}


def dashboard_queries(sections: Sequence[Section]) -> list[pulumi.Input[str]]:
    return [s.query for section in sections for w in section.widgets if isinstance(w, Chart) for s in w.series]


# ---------------------------------------------------------------------------
# Alert specs.


@dataclass(frozen=True)
class AlertSpec:
    """One alert policy with a single PromQL condition."""

    key: str  # stable child-resource suffix, e.g. "gemma-1b-queue"
    display_name: str
    query: pulumi.Input[str]  # PromQL returning the series that are in violation (a comparison)
    duration_seconds: int  # how long the query must hold before an incident opens
    severity: str  # CRITICAL | ERROR | WARNING
    documentation: str  # markdown: what it means and what to do
    labels: Mapping[str, str] = field(default_factory=dict)
    evaluation_interval_seconds: int = 60
    auto_close_seconds: int = 1800


def render_alert_policy(spec: AlertSpec, channels: Sequence[pulumi.Input[str]] = ()) -> dict[str, Any]:
    """The policy in the Monitoring API's JSON shape (values may still be Outputs)."""
    policy: dict[str, Any] = {
        "displayName": spec.display_name,
        "combiner": "OR",
        "severity": spec.severity,
        "conditions": [{
            "displayName": spec.display_name,
            "conditionPrometheusQueryLanguage": {
                "query": spec.query,
                "duration": f"{spec.duration_seconds}s",
                "evaluationInterval": f"{spec.evaluation_interval_seconds}s",
            },
        }],
        "documentation": {"content": spec.documentation, "mimeType": "text/markdown",
                          "subject": f"[{spec.severity}] {spec.display_name}"},
        "alertStrategy": {"autoClose": f"{spec.auto_close_seconds}s"},
    }
    if spec.labels:
        policy["userLabels"] = dict(spec.labels)
    if channels:
        policy["notificationChannels"] = list(channels)
    return policy


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def _snake_keys(value: Any) -> Any:
    """API JSON keys -> pulumi-gcp's Python argument names (userLabels -> user_labels); label maps keep their keys."""
    if isinstance(value, dict):
        return {_snake(k): (v if k == "userLabels" else _snake_keys(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake_keys(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# Components.


@dataclass(frozen=True, kw_only=True)
class ServingDashboardArgs:
    project: str
    display_name: str  # shown in the dashboard list, e.g. "llm-serving prod"
    sections: tuple[Section, ...]  # one per deployment


class ServingDashboard(pulumi.ComponentResource):
    """One Cloud Monitoring dashboard; outputs its console URL."""

    dashboard_url: pulumi.Output[str]
    dashboard_json: pulumi.Output[str]

    def __init__(self, name: str, args: ServingDashboardArgs, opts: Optional[pulumi.ResourceOptions] = None):
        problems = []
        if not args.sections:
            problems.append("sections: is empty; give at least one section")
        if not args.display_name:
            problems.append("display_name: is empty")
        if problems:
            raise ValueError(f"ServingDashboard {name!r} has invalid arguments:\n  - " + "\n  - ".join(problems))
        super().__init__(DASHBOARD_TYPE, name, None, opts)
        rendered = render_dashboard(args.display_name, args.sections)
        self.dashboard_json = pulumi.Output.from_input(rendered).apply(lambda d: json.dumps(d, sort_keys=True))
        dashboard = gcp.monitoring.Dashboard(
            f"{name}-dashboard",
            project=args.project,
            dashboard_json=self.dashboard_json,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # The resource id is projects/<number>/dashboards/<id>; the console addresses it by <id>.
        self.dashboard_url = dashboard.id.apply(
            lambda rid: f"https://console.cloud.google.com/monitoring/dashboards/builder/"
                        f"{rid.rsplit('/', 1)[-1]}?project={args.project}")
        self.register_outputs({"dashboard_url": self.dashboard_url, "dashboard_json": self.dashboard_json})


@dataclass(frozen=True, kw_only=True)
class ServingAlertsArgs:
    project: str
    policies: tuple[AlertSpec, ...]
    notification_emails: tuple[str, ...] = ()  # an email channel is created for each
    notification_channels: tuple[str, ...] = ()  # existing channels: projects/<p>/notificationChannels/<id>
    channel_prefix: str = "llm-serving"  # display-name prefix of the email channels
    labels: Mapping[str, str] = field(default_factory=dict)  # user labels on channels and policies


def _validate_alerts(a: ServingAlertsArgs) -> list[str]:
    problems = []
    keys = [p.key for p in a.policies]
    for key in sorted({k for k in keys if keys.count(k) > 1}):
        problems.append(f"policies: key {key!r} is used twice; keys name child resources and must be unique")
    for p in a.policies:
        if p.severity not in SEVERITIES:
            problems.append(f"policies.{p.key}.severity: got {p.severity!r}; use one of {', '.join(SEVERITIES)}")
        if p.duration_seconds < 0:
            problems.append(f"policies.{p.key}.duration_seconds: got {p.duration_seconds}; use 0 or more")
        if not p.documentation.strip():
            problems.append(f"policies.{p.key}.documentation: is empty; say what the alert means and what to do")
    for email in a.notification_emails:
        if not _EMAIL.fullmatch(email):
            problems.append(f"notification_emails: got {email!r}; give an address like oncall@example.com")
    for channel in a.notification_channels:
        if not _CHANNEL_ID.fullmatch(channel):
            problems.append(f"notification_channels: got {channel!r}; give projects/<project>/notificationChannels/<id>")
    return problems


class ServingAlerts(pulumi.ComponentResource):
    """Alert policies, each notifying the email channels it creates and the existing channels given."""

    policy_names: pulumi.Output[dict[str, str]]  # key -> projects/<p>/alertPolicies/<id>

    def __init__(self, name: str, args: ServingAlertsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        problems = _validate_alerts(args)
        if problems:
            raise ValueError(f"ServingAlerts {name!r} has invalid arguments:\n  - " + "\n  - ".join(problems))
        super().__init__(ALERTS_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        channels: list[pulumi.Input[str]] = list(args.notification_channels)
        for email in dict.fromkeys(args.notification_emails):
            slug = re.sub(r"[^a-z0-9]+", "-", email.lower()).strip("-")
            channel = gcp.monitoring.NotificationChannel(
                f"{name}-email-{slug}",
                project=args.project,
                type="email",
                display_name=f"{args.channel_prefix} {email}",
                labels={"email_address": email},
                user_labels=dict(args.labels) or None,
                opts=child,
            )
            channels.append(channel.name)
        names: dict[str, pulumi.Output[str]] = {}
        for spec in args.policies:
            spec = dataclasses.replace(spec, labels={**args.labels, **spec.labels})
            fields = _snake_keys(render_alert_policy(spec))
            policy = gcp.monitoring.AlertPolicy(
                f"{name}-{spec.key}",
                project=args.project,
                notification_channels=channels or None,
                **fields,
                opts=child,
            )
            names[spec.key] = policy.name
        self.policy_names = pulumi.Output.all(**names)
        self.register_outputs({"policy_names": self.policy_names})
