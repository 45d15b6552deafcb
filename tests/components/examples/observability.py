"""ServingDashboard and ServingAlerts: one section with a vLLM chart and a logs link, and one alert
policy that emails on-call; returns the dashboard's console URL."""

import pulumi

from components.observability import (
    AlertSpec,
    Chart,
    LogsLinks,
    Section,
    Series,
    ServingAlerts,
    ServingAlertsArgs,
    ServingDashboard,
    ServingDashboardArgs,
)

SELECTOR = '{cluster="__run__",namespace="llm-dev-gemma"}'


def example() -> pulumi.Output:
    dashboard = ServingDashboard("dashboard", ServingDashboardArgs(
        project="my-project",
        display_name="LLM serving: dev",
        sections=(Section("gemma: google/gemma-3-1b-it on Cloud Run", (
            Chart("vLLM requests waiting", (Series(f"sum(vllm:num_requests_waiting{SELECTOR})", "waiting"),),
                  unit="{requests}"),
            LogsLinks("Logs", (("gemma logs", "https://console.cloud.google.com/logs/query?project=my-project"),)),
        )),),
    ))
    ServingAlerts("alerts", ServingAlertsArgs(
        project="my-project",
        policies=(AlertSpec(key="gemma-queue", display_name="gemma: request queue above 10",
                            query=f"avg(vllm:num_requests_waiting{SELECTOR}) > 10", duration_seconds=600,
                            severity="WARNING", documentation="Requests queue in vLLM.\n\nWhat to do: add replicas."),),
        notification_emails=("oncall@example.com",),
    ))
    return dashboard.dashboard_url
