"""The values the program chooses when a stack file leaves a setting unset.

``stacks.resolve`` applies them; ``stacks.config`` quotes them in each setting's documentation,
which ``tools.docs`` renders into the README's config reference. One constant per default, so
what the reference says is what a deployment gets.
"""

from __future__ import annotations

# vLLM: the longest sequence served when `maxModelLen` is unset (then capped by the model's
# context and by what fits the devices).
MAX_MODEL_LEN = 8192
# vLLM: most sequences batched for Llama 3.2 Vision on the Model Garden image (V0 encoder-decoder
# runner, whose profiling run encodes one image per sequence): vLLM's default of 256 ran the 11B
# Vision model out of memory on an A100 40GB in the Vertex AI tutorial, 12 served. The only
# max_num_seqs the project sets itself; every other deployment runs vLLM's own default.
VISION_MAX_NUM_SEQS = 12

# Replicas when `scaling.minReplicas` / `maxReplicas` are unset.
CLOUDRUN_MIN_REPLICAS = 0  # scale to zero
CLOUDRUN_MAX_REPLICAS = 3
MIN_REPLICAS = 1  # Vertex AI and GKE
MAX_REPLICAS = 1  # Vertex AI; GKE: at least its min replicas
VERTEX_REPLICA_FLOOR = 1  # Vertex AI keeps at least one replica, whatever the config says

# Autoscaling targets per replica when `scaling.target` is unset.
WAITING_REQUESTS_TARGET = 10.0  # GKE HPA on vllm:num_requests_waiting
KV_CACHE_USAGE_TARGET = 0.8  # GKE HPA on KV-cache usage (a 0-1 fraction)
DUTY_CYCLE_TARGET_PERCENT = 60.0  # Vertex AI accelerator duty cycle

# GKE scale to zero (`gke.scaleToZero`, KEDA and its HTTP add-on; components/keda*.py).
SCALE_TO_ZERO = False  # on per deployment; the dev stack turns it on
SCALE_TO_ZERO_IDLE_SECONDS = 900  # no request for 15 minutes: back to zero replicas, then zero nodes
# How long a waking request allows the cluster autoscaler to add an accelerator node from zero (VM
# creation, GPU driver or TPU runtime, node ready): this many times the expected time
# (`node_provision_seconds` in stacks/catalog/data/startup.yaml, 300 s: 600 s). An assumption, not a
# measurement: GKE publishes no figure. The first request waits this plus the deployment's start-up budget.
NODE_PROVISIONING_BUDGET_FACTOR = 2
# How long the interceptor waits for response headers once it has forwarded a request: a whole
# non-streamed completion (streamed responses send headers at once).
WAKE_RESPONSE_HEADER_SECONDS = 600

# Alert thresholds when neither `monitoring.alerts` nor a deployment's `alerts` sets them.
ALERT_QUEUE_WAITING = WAITING_REQUESTS_TARGET  # past the HPA's target a replica should have been added
ALERT_KV_CACHE_USAGE = 0.95  # past this vLLM preempts and recomputes sequences
ALERT_ERROR_RATIO = 0.05
ALERT_TTFT_P95_SECONDS = 2.0  # an interactive chat objective
ALERT_SUSTAINED_MINUTES = 10
ALERT_IDLE_MINUTES = 60
# GKE pod requests: this share of the pod's part of the node (its devices over the node's). The
# rest is headroom for system daemons, the GCS FUSE sidecar and its in-memory file cache, which
# grows while weights download. No limits: a memory limit would kill the pod when the cache
# fills, a CPU limit throttles tokenisation.
GKE_POD_REQUEST_SHARE = 0.5

# Weights streamed from the bucket copy by vLLM's Run:ai model streamer (`--load-format runai_streamer`,
# https://docs.vllm.ai/en/stable/models/extensions/runai_model_streamer/, "Tunable parameters").
STREAMER_CONCURRENCY = 16  # reader threads (GCS clients): the streamer's documented default, said explicitly
# Cloud Run: the streamer's CPU buffer is capped at this share of the instance's memory (its own default is
# unbounded), so a model larger than the buffer streams through it instead of exhausting the instance.
STREAMER_CLOUDRUN_MEMORY_SHARE = 0.25
# Where the weights-copy job puts a model revision, and where serving reads it.
WEIGHTS_PREFIX = "models/{model}/{revision}"
WEIGHTS_UNPINNED_REVISION = "main"  # copied once as it is on the first run: pin modelRevision

# Names of shared resources, as templates over the project id and the stack's name prefix.
NAME_PREFIX = "llm-{environment}"
BUCKET_NAME = "{project}-{prefix}-models"  # cut to 63 characters, the bucket-name limit
CLUSTER_NAME = "{prefix}-gke"
HF_TOKEN_SECRET = "{prefix}-hf-token"  # Secret Manager secret id, when the stack creates it from `hfToken`
API_KEY_SECRET = "{prefix}-{deployment}-api-key"  # Secret Manager secret of a generated GKE API key
WEIGHTS_COPY_JOB = "{prefix}-{deployment}-weights"  # Cloud Run job that copies a deployment's weights


def shown(template: str) -> str:
    """A name template as the config reference shows it, e.g. `<project>-<namePrefix>-models`."""
    return template.format(project="<project>", prefix="<namePrefix>", environment="<environment>",
                           deployment="<deployment>")

# GKE graceful drain. preStop sleep: a terminating pod leaves the Service's endpoints at once, and the
# internal load balancer's health check and kube-proxy need a few probe intervals to stop sending (an
# estimate, not measured here). Then vLLM gets SIGTERM and drains for up to `gke.drainSeconds` (its
# --shutdown-timeout): long enough for a typical generation to finish. The grace period covers both plus a margin.
PRESTOP_SLEEP_SECONDS = 15
DRAIN_SECONDS = 120
TERMINATION_MARGIN_SECONDS = 15
# With a compile cache, its save sidecar (a native sidecar) gets SIGTERM only after vLLM has exited, within the
# same grace period, and uploads what changed since its save after warm-up: usually little, but a listing and a
# few objects through gcloud take seconds. The grace period adds this much so that save is not cut off.
COMPILE_CACHE_FINAL_SAVE_SECONDS = 30

# HPA windows (stacks/startup.py) from a replica's expected start (stacks/coldstart.py, figures in
# stacks/catalog/data/startup.yaml).
# Scale-up window as a share of the start time: pressure that ends sooner is gone before a new replica serves.
SCALE_UP_WINDOW_SHARE = 0.25
SCALE_UP_WINDOW_FLOOR_SECONDS = 60  # at least four Managed Prometheus scrapes (15 s) of sustained pressure
