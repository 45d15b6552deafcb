"""Capacity fallbacks, calm autoscaling, graceful drain and maintenance on GKE, through the real program
under the mock engine: the committed stacks' ComputeClass against a schema written from GKE's API reference,
the core objects against Kubernetes' own schemas, the HPA window arithmetic, and the preview errors for
capacity a zone or GKE version cannot give."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from components.compute_class import ComputeClassArgs, render_spec
from offline.plan import capacity_rows, plan, read_stack_file, render_text
from stacks import defaults
from stacks.catalog import CATALOG
from stacks.catalog.capacity import capacity_prices, capacity_table
from stacks.coldstart import startup_budget, startup_figures
from stacks.config import load
from stacks.schema import ConfigError
from stacks.startup import HPA_MAX_PERIOD_SECONDS, HPA_MAX_WINDOW_SECONDS, hpa_windows

ROOT = Path(__file__).resolve().parents[2]
NS = "llm-serving:"
SCHEMA = json.loads((Path(__file__).parent / "data" / "computeclass.schema.json").read_text())
K8S_VERSION = "1.33.0"
CC_TYPE = "kubernetes:cloud.google.com/v1:ComputeClass"


def stack_values(stack: str) -> tuple[dict, set[str]]:
    return read_stack_file(ROOT / f"Pulumi.{stack}.yaml")


def planned(stack: str, tmp_path, values=None):
    raw, secrets = stack_values(stack)
    result = plan(values or raw, secrets, stack=stack, source=f"Pulumi.{stack}.yaml", out_dir=tmp_path)
    assert not result.failed, [c.render() for c in result.checks if c.level == "error"]
    return result


def config_problems(values: dict, stack: str = "prod") -> str:
    _, secrets = stack_values(stack)
    with pytest.raises(ConfigError) as info:
        load(values, secrets, source=f"Pulumi.{stack}.yaml", stack=stack)
    return str(info.value)


# ---------------------------------------------------------------------------
# Every rendered object validates.


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_every_gke_manifest_validates(stack, tmp_path):
    result = planned(stack, tmp_path)
    kinds = []
    for path in result.manifests:
        obj = yaml.safe_load(path.read_text())
        kinds.append(obj["kind"])
        if obj["kind"] == "ComputeClass":
            errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(obj), key=str)
            assert not errors, f"{path.name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors)
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert obj["kind"] == "PodMonitoring", f"{path.name}: no schema for {obj['kind']}"
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path.name}: {error}")
    assert {"ComputeClass", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Deployment"} <= set(kinds), kinds


def test_the_schema_can_fail():
    """The hand-written schema rejects what GKE would: a misspelt key, flexStart as a bare boolean, spot with flexStart."""
    good = {"apiVersion": "cloud.google.com/v1", "kind": "ComputeClass", "metadata": {"name": "x"},
            "spec": {"priorities": [{"nodepools": ["x"]}]}}
    jsonschema.validate(good, SCHEMA)
    for bad in ({"flexstart": {"enabled": True}}, {"flexStart": True},
                {"spot": True, "flexStart": {"enabled": True}}, {"tpu": {"type": "tpu-v6e-slice", "count": 8}},
                {"reservations": {"affinity": "Specific"}}):
        doc = copy.deepcopy(good)
        doc["spec"]["priorities"].append(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, SCHEMA)


@pytest.mark.parametrize("kind,fallbacks", [("tpu", ("reservation", "on-demand", "flex-start", "spot")),
                                            ("gpu", ("on-demand", "spot"))])
def test_component_renders_each_capacity_type_to_the_schema(kind, fallbacks):
    args = ComputeClassArgs(
        provider=None,  # render_spec reads no provider
        class_name="pool", node_pool="pool", accelerator_kind=kind,
        gke_accelerator="tpu-v6e-slice" if kind == "tpu" else "nvidia-l4",
        accelerator_count=8 if kind == "tpu" else 2, machine_type="ct6e-standard-8t" if kind == "tpu" else "g2-standard-24",
        tpu_topology="2x4" if kind == "tpu" else None, fallbacks=fallbacks, reservation="my-reservation",
        node_service_account="nodes@p.iam.gserviceaccount.com")
    doc = {"apiVersion": "cloud.google.com/v1", "kind": "ComputeClass", "metadata": {"name": "pool"},
           "spec": render_spec(args)}
    jsonschema.validate(doc, SCHEMA)
    priorities = doc["spec"]["priorities"]
    assert priorities[0] == {"nodepools": ["pool"]}, priorities
    rendered = []
    for p in priorities[1:]:
        rendered.append("reservation" if "reservations" in p else "flex-start" if "flexStart" in p
                        else "spot" if p.get("spot") else "on-demand")
    assert tuple(rendered) == fallbacks, f"pool: priorities {priorities}"
    assert doc["spec"]["nodePoolConfig"]["serviceAccount"] == "nodes@p.iam.gserviceaccount.com"


# ---------------------------------------------------------------------------
# Preview errors for capacity that cannot exist.


def test_flex_start_where_the_zone_has_none_is_an_error_naming_the_zones():
    values, _ = stack_values("prod")
    values = copy.deepcopy(values)
    values[f"{NS}gke"]["nodePools"]["tpu-v6e"]["fallbacks"] = ["flex-start", "spot"]
    text = config_problems(values)
    offer = capacity_table().offer("tpu-v6e", "flex-start")
    assert offer is not None and offer.zones and "europe-west4-a" not in offer.zones
    line = next(line for line in text.splitlines() if "gke.nodePools.tpu-v6e.fallbacks[0]" in line)
    assert "europe-west4-a" in line and all(zone in line for zone in offer.zones), line
    assert "fallbacks[1]" not in text, f"spot exists in europe-west4-a, yet: {text}"


def test_a_version_floor_below_flex_start_is_an_error(tmp_path):
    values, _ = stack_values("staging")
    values = copy.deepcopy(values)
    values[f"{NS}gke"]["minMasterVersion"] = "1.32"
    text = config_problems(values, "staging")
    assert "gke.minMasterVersion" in text and "1.33.0-gke.1712000" in text and "flex-start" in text, text


def test_a_reservation_fallback_needs_the_reservation_and_no_capacity_twice():
    values, _ = stack_values("prod")
    values = copy.deepcopy(values)
    values[f"{NS}gke"]["nodePools"]["tpu-v6e"]["fallbacks"] = ["reservation", "spot", "spot"]
    text = config_problems(values)
    assert "fallbacks[0]: is reservation, but the pool names none" in text, text
    assert "fallbacks[2]: 'spot' is listed twice" in text, text


def test_maintenance_window_shorter_than_gke_allows_is_an_error():
    values, _ = stack_values("prod")
    values = copy.deepcopy(values)
    values[f"{NS}gke"]["maintenance"] = {"windowStart": "2026-01-03T00:00:00Z", "windowEnd": "2026-01-03T03:00:00Z",
                                         "windowRecurrence": "FREQ=WEEKLY;BYDAY=SU",
                                         "exclusions": {"freeze": {"start": "2026-12-01T00:00:00Z",
                                                                   "end": "2027-01-15T00:00:00Z"}}}
    text = config_problems(values)
    assert "gke.maintenance.windowEnd: the window is 3 hours long" in text, text
    assert "gke.maintenance.exclusions.freeze.end" in text and "at most 30 days" in text, text


# ---------------------------------------------------------------------------
# prod: fallback order, calm HPA, drain, maintenance; the plan's cost per capacity type.


def test_prod_fallback_order_calm_hpa_drain_and_maintenance(tmp_path):
    result = planned("prod", tmp_path)
    run = result.run
    cc = run.named("llm-prod-tpu-v6e-class-computeclass").inputs["spec"]
    assert [("pool" if "nodepools" in p else "spot" if p.get("spot") else "other") for p in cc["priorities"]] == \
        ["pool", "spot"], f"llm-prod-tpu-v6e-class-computeclass: {cc['priorities']}"
    assert cc["whenUnsatisfiable"] == "DoNotScaleUp" and cc["nodePoolAutoCreation"] == {"enabled": True}, cc

    d = result.resolved.deployments["llama-70b"]
    # The start the windows rest on, recomputed from the model's size and the GKE TPU figures.
    f = startup_figures("gke-tpu", "tpu")
    weight_gb = d.model.params_billion * d.model.weight_bytes_per_param
    start = f.node_seconds + f.fixed_seconds + math.ceil(weight_gb / f.load_gb_per_s) + f.compile_seconds
    windows = hpa_windows(start)
    behavior = run.named("llm-prod-llama-70b-hpa").inputs["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == windows.scale_up_window_seconds, behavior
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == windows.scale_down_window_seconds, behavior
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1,
                                                  "periodSeconds": windows.scale_down_period_seconds}], behavior

    pod = run.named("llm-prod-llama-70b-deployment").inputs["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert f"--shutdown-timeout={defaults.DRAIN_SECONDS}" in args, f"llm-prod-llama-70b-deployment: args {args}"
    # The compile cache is on by default: its save sidecar stops after vLLM, within the same grace period.
    assert d.compile_cache is not None
    assert pod["terminationGracePeriodSeconds"] == (defaults.PRESTOP_SLEEP_SECONDS + defaults.DRAIN_SECONDS
                                                    + defaults.TERMINATION_MARGIN_SECONDS
                                                    + defaults.COMPILE_CACHE_FINAL_SAVE_SECONDS), pod["terminationGracePeriodSeconds"]
    assert pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(defaults.PRESTOP_SLEEP_SECONDS)]
    pdb = run.named("llm-prod-llama-70b-pdb").inputs["spec"]
    assert pdb["maxUnavailable"] == 1 and pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow", pdb

    policy = run.named("llm-prod-gke-cluster").inputs["maintenancePolicy"]
    assert policy["recurringWindow"]["recurrence"] == "FREQ=WEEKLY;BYDAY=SA,SU", f"llm-prod-gke-cluster: {policy}"

    row = next(r for r in capacity_rows(result.resolved) if r["deployment"] == "llama-70b")
    assert row["capacity_order"] == ["pool tpu-v6e (on-demand)", "spot"], row
    spot = capacity_prices().price("ct6e-standard-8t", "spot")
    on_demand = CATALOG.price("ct6e-standard-8t")
    assert spot is not None and on_demand is not None
    assert row["usd_per_hour"]["spot"] == {"min_replicas": round(spot.usd_per_hour * 1, 2),
                                           "max_replicas": round(spot.usd_per_hour * 2, 2)}, row
    assert row["usd_per_hour"]["on-demand"]["max_replicas"] == round(on_demand.usd_per_hour * 2, 2), row


def test_plan_text_shows_the_fallback_order_and_cost_range(tmp_path):
    text = render_text(planned("prod", tmp_path))
    spot = capacity_prices().price("ct6e-standard-8t", "spot")
    assert spot is not None
    assert "pool tpu-v6e (on-demand) -> spot" in text, text[-2000:]
    assert f"spot {spot.usd_per_hour:.2f}-{2 * spot.usd_per_hour:.2f}" in text, text[-2000:]


def test_an_image_without_a_drain_flag_gets_none():
    assert CATALOG.flag_accepted("--shutdown-timeout", (0, 32, 0), "openai")
    assert not CATALOG.flag_accepted("--shutdown-timeout", (0, 6, 6), "openai")


# ---------------------------------------------------------------------------
# Window arithmetic.


@pytest.mark.parametrize("start,up,down,period", [
    (0, 60, 0, 60),  # nothing to wait for: the floors
    (100, 60, 120, 60),  # 25 s rounds up to the 60 s floor; 100 s rounds up to 2 minutes
    (1763, 450, 1800, 900),  # 440.75 s -> 450 (whole scrapes); 29.4 min -> 30 min; half of it
    (3000, 750, 3000, 1500),
    (10000, 2505, 3600, 1800),  # both capped at the API's limits
    (20000, 3600, 3600, 1800),
])
def test_hpa_windows_arithmetic(start, up, down, period):
    w = hpa_windows(start)
    assert (w.scale_up_window_seconds, w.scale_down_window_seconds, w.scale_down_period_seconds) == (up, down, period), w
    assert w.scale_up_window_seconds <= HPA_MAX_WINDOW_SECONDS and w.scale_down_period_seconds <= HPA_MAX_PERIOD_SECONDS


def test_hpa_windows_refuse_a_negative_start():
    with pytest.raises(ValueError):
        hpa_windows(-1)


def test_start_estimate_adds_node_start_weights_and_compile():
    gke = startup_budget("gke-gpu", "gpu", 10e9, None, "gke.startupTimeoutSeconds")
    f = startup_figures("gke-gpu", "gpu")
    assert gke.load_seconds == math.ceil(10 / f.load_gb_per_s), gke
    assert gke.expected_start_seconds == f.node_seconds + f.fixed_seconds + gke.load_seconds + f.compile_seconds, gke
    # No safety factor: the expectation stays below the probe's ceiling built from the same figures.
    assert f.node_seconds > 0 and gke.expected_start_seconds < gke.estimate_seconds + f.node_seconds, gke
    # Cloud Run has no node of its own to wait for.
    assert startup_budget("cloudrun", "gpu", 10e9, None, "cloudrun.startupTimeoutSeconds").node_seconds == 0


def test_an_old_vllm_on_gke_warns_that_it_cannot_drain(tmp_path):
    values, secrets = stack_values("prod")
    values = copy.deepcopy(values)
    values[f"{NS}deployments"]["llama-70b"]["image"] = "vllm/vllm-tpu:2e33fe419186c65a18da6668972d61d7bbc31564"
    result = plan(values, secrets, stack="prod", source="Pulumi.prod.yaml", out_dir=tmp_path)
    d = result.resolved.deployments["llama-70b"]
    assert d.vllm.shutdown_timeout is None and not any(a.startswith("--shutdown-timeout") for a in d.container.args), \
        d.container.args
    warnings = [c.render() for c in result.checks if c.level == "warning" and "--shutdown-timeout" in c.render()]
    assert len(warnings) == 1 and "0.6.6" in warnings[0], [c.render() for c in result.checks]


def test_drain_flag_in_extra_args_on_gke_is_refused():
    values, _ = stack_values("prod")
    values = copy.deepcopy(values)
    values[f"{NS}deployments"]["llama-70b"]["vllm"]["extraArgs"] = ["--shutdown-timeout=30"]
    assert "deployments.llama-70b.vllm.extraArgs[0]: got '--shutdown-timeout=30'; on GKE the drain is rendered from " \
           "gke.drainSeconds" in config_problems(values)


def test_replicas_beyond_the_pool_come_from_fallbacks(tmp_path):
    values, _ = stack_values("prod")
    values = copy.deepcopy(values)
    values[f"{NS}deployments"]["llama-70b"]["scaling"]["maxReplicas"] = 4
    result = planned("prod", tmp_path, values)
    infos = [c.render() for c in result.checks if "come from its fallbacks (spot)" in c.render()]
    assert infos, [c.render() for c in result.checks]
    del values[f"{NS}gke"]["nodePools"]["tpu-v6e"]["fallbacks"]
    _, secrets = stack_values("prod")
    refused = plan(values, secrets, stack="prod", source="Pulumi.prod.yaml", out_dir=tmp_path)
    assert any("exceeds what node pool tpu-v6e can hold" in c.render() for c in refused.checks if c.level == "error")


def test_spot_before_steadier_capacity_is_a_warning(tmp_path):
    values, _ = stack_values("staging")
    values = copy.deepcopy(values)
    values[f"{NS}gke"]["nodePools"]["tpu-v6e"]["fallbacks"] = ["spot", "on-demand"]
    result = planned("staging", tmp_path, values)
    warned = [c.render() for c in result.checks if c.level == "warning" and "tries spot before on-demand" in c.render()]
    assert len(warned) == 1, [c.render() for c in result.checks]
    assert not any("tries" in c.render() for c in planned("staging", tmp_path).checks), "the committed order warns"
