"""vLLM's compile cache kept on local disk and carried between replicas through the model bucket.

Why not on the bucket mount: a cache read and written through GCS FUSE is reported not to be
reused (vllm-project/tpu-inference#606, https://github.com/vllm-project/tpu-inference/issues/606;
marin-community/marin#2318: a GCS-backed JAX cache missed where a local one hit), and replicas
compiling into one FUSE directory at once fail with "cannot create directories" (GKE tutorial
"Serve an LLM using TPU Trillium on GKE with vLLM", https://cloud.google.com/kubernetes-engine/docs/tutorials/serve-vllm-tpu).
So the server compiles into a local directory (``VLLM_XLA_CACHE_PATH`` on TPU, vLLM's default
``~/.cache/vllm/xla_cache`` otherwise; ``VLLM_CACHE_ROOT`` and its ``torch_compile_cache`` on GPU,
vllm/envs.py and https://docs.vllm.ai/en/latest/design/torch_compile.html "Compilation Cache"),
and a small gcloud container moves it:

- **restore** (an init container, before the server starts): copies
  ``gs://<bucket>/compile-cache/<key>/`` into the directory when it exists; any failure only
  means the server compiles from scratch, so it never blocks a start;
- **save** (a sidecar that runs beside the server): waits until ``/health`` answers, which
  both backends do only after warm-up compiled every graph (the TPU runner precompiles all
  padded shapes before the server listens; on GPU torch.compile and CUDA graph capture run
  before it too), uploads the directory once, and once more on SIGTERM. A pod stopped before
  it ever became healthy saves nothing, so a half-written cache never reaches the bucket.

On Cloud Run, which has no init containers, one sidecar does both: it restores, then opens a
loopback port its startup probe waits for (the server's container depends on it, so vLLM starts
after the restore), then saves as above. Cloud Run gives containers 10 seconds after SIGTERM
(https://cloud.google.com/run/docs/container-contract#instance-shutdown), so there the save after
warm-up is the one that counts. The cache sits in an in-memory volume (Cloud Run has no node disk).

A preStop hook on the server would need gcloud inside the vLLM image and runs within the
server's own grace period before the last graphs are on disk; a sidecar that saves after
warm-up needs neither. On GKE the sidecar is a native sidecar (an init container with
``restartPolicy: Always``, Kubernetes 1.29+; https://kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/),
stopped after the server, so its final save sees everything the server wrote.

The key in the prefix is decided by the stack (``stacks/coldstart.py``): a change of model,
revision, flags, accelerator, topology or image gives a new prefix, never a wrong cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from components.rules import pinned_image_problem

# Object prefix under which every cache lives; each deployment configuration has its own key below it.
CACHE_PREFIX_ROOT = "compile-cache"
# gcloud's image (Docker Hub google/cloud-sdk, the alpine variant carries bash and curl besides
# gcloud): https://hub.docker.com/r/google/cloud-sdk/tags. Pinned by tag and digest.
SYNC_IMAGE = ("google/cloud-sdk:530.0.0-alpine"
              "@sha256:25acf81d3b7db5a22f5c5b8dad9b191b70f0cec2c0743ee59c5c9244ef7b6996")
RESTORE_CONTAINER = "compile-cache-restore"
SAVE_CONTAINER = "compile-cache-save"
VOLUME = "compile-cache"
_SCRATCH_VOLUME = "compile-cache-gcloud"  # gcloud's own config and logs (the root filesystem is read-only)
_SCRATCH_DIR = "/tmp/gcloud"
NOBODY = 65534
_KEYED_PREFIX = re.compile(rf"{CACHE_PREFIX_ROOT}/[0-9a-f]{{8,64}}/")


@dataclass(frozen=True, kw_only=True)
class CompileCacheSync:
    """Where one deployment's compile cache lives locally and in the bucket."""

    prefix: str  # object prefix in the model bucket, ``compile-cache/<key>/``
    local_dir: str  # the local directory the server compiles into (an emptyDir)
    env: tuple[tuple[str, str], ...]  # what points the server at local_dir, e.g. (("VLLM_XLA_CACHE_PATH", ...),)
    image: str = SYNC_IMAGE  # gcloud image, pinned by tag or digest
    poll_seconds: int = 10  # how often the save sidecar asks /health before the first save

    def problems(self) -> list[str]:
        found = []
        if not _KEYED_PREFIX.fullmatch(self.prefix):
            found.append(f"compile_cache.prefix: got {self.prefix!r}; give {CACHE_PREFIX_ROOT}/<hex key>/ so a "
                         "changed model, flag or image never restores another configuration's cache")
        if not self.local_dir.startswith("/") or self.local_dir.rstrip("/") in ("", "/tmp", "/dev/shm"):
            found.append(f"compile_cache.local_dir: got {self.local_dir!r}; give an absolute directory of its own, "
                         "e.g. /compile-cache")
        problem = pinned_image_problem(self.image)
        if problem:
            found.append(f"compile_cache.image: {problem}")
        if not self.env:
            found.append("compile_cache.env: empty; the server would not compile into local_dir")
        for name, value in self.env:
            if not value.startswith(self.local_dir):
                found.append(f"compile_cache.env.{name}: got {value!r}, outside local_dir {self.local_dir!r}; the "
                             "sync would not carry it")
        if self.poll_seconds < 1:
            found.append(f"compile_cache.poll_seconds: got {self.poll_seconds}; use 1 or more")
        return found


BUCKET_ENV = "CACHE_BUCKET"  # the model bucket's name, given to both scripts as environment


def restore_script(sync: CompileCacheSync) -> str:
    """Shell run before the server: copy the bucket's cache in when there is one; never fail.
    Files are restored world-writable (umask 0): the server runs as another user, without
    CAP_DAC_OVERRIDE, and adds to these directories."""
    return (
        f'src="gs://${BUCKET_ENV}/{sync.prefix}"; dir="{sync.local_dir}"; umask 0000\n'
        'if gcloud storage ls "$src" >/dev/null 2>&1; then\n'
        '  gcloud storage rsync --recursive "$src" "$dir" && echo "compile cache: restored from $src" \\\n'
        '    || echo "compile cache: restoring from $src failed; the server compiles from scratch"\n'
        'else\n'
        '  echo "compile cache: nothing at $src yet; the server compiles and saves it"\n'
        'fi\n'
        'exit 0\n'
    )


def save_script(sync: CompileCacheSync, health_url: str) -> str:
    """Shell run beside the server: save once after warm-up and again at shutdown, never before
    the server was healthy (a cache cut off mid-compile stays out of the bucket)."""
    return (
        f'dst="gs://${BUCKET_ENV}/{sync.prefix}"; dir="{sync.local_dir}"; ready=0\n'
        'save() { gcloud storage rsync --recursive "$dir" "$dst" && echo "compile cache: saved to $dst" '
        '|| echo "compile cache: saving to $dst failed"; }\n'
        "trap '[ \"$ready\" = 1 ] && save; exit 0' TERM INT\n"
        f'until curl -fsS -o /dev/null "{health_url}"; do sleep {sync.poll_seconds} & wait $!; done\n'
        'ready=1; save\n'
        'while true; do sleep 3600 & wait $!; done\n'
    )


def _security_context() -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        read_only_root_filesystem=True,
        run_as_non_root=True,
        run_as_user=NOBODY,
        run_as_group=NOBODY,
    )


def _sync_env(bucket: pulumi.Input[str]) -> list[k8s.core.v1.EnvVarArgs]:
    return [k8s.core.v1.EnvVarArgs(name=BUCKET_ENV, value=bucket),
            k8s.core.v1.EnvVarArgs(name="CLOUDSDK_CONFIG", value=_SCRATCH_DIR),
            k8s.core.v1.EnvVarArgs(name="HOME", value=_SCRATCH_DIR)]


def _resources() -> k8s.core.v1.ResourceRequirementsArgs:
    return k8s.core.v1.ResourceRequirementsArgs(requests={"cpu": "250m", "memory": "256Mi"},
                                                limits={"cpu": "1", "memory": "1Gi"})


def k8s_init_containers(bucket: pulumi.Input[str], sync: CompileCacheSync, health_url: str,
                        image: Optional[str] = None) -> list[k8s.core.v1.ContainerArgs]:
    """The restore init container and the save sidecar (a native sidecar: restartPolicy Always),
    in that order: the restore finishes before the sidecar and the server start."""
    pulled = image or sync.image

    def container(name: str, script: str, restart_policy: Optional[str]) -> k8s.core.v1.ContainerArgs:
        return k8s.core.v1.ContainerArgs(
            name=name, image=pulled, image_pull_policy="Always", restart_policy=restart_policy,
            command=["/bin/sh", "-c", script], env=_sync_env(bucket),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name=VOLUME, mount_path=sync.local_dir),
                           k8s.core.v1.VolumeMountArgs(name=_SCRATCH_VOLUME, mount_path=_SCRATCH_DIR)],
            security_context=_security_context(), resources=_resources())

    return [container(RESTORE_CONTAINER, restore_script(sync), None),
            container(SAVE_CONTAINER, save_script(sync, health_url), "Always")]


def k8s_volumes() -> list[k8s.core.v1.VolumeArgs]:
    """Node-disk emptyDirs: compiled graphs run to gigabytes on TPU, too much to hold in memory."""
    return [k8s.core.v1.VolumeArgs(name=VOLUME, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
            k8s.core.v1.VolumeArgs(name=_SCRATCH_VOLUME,
                                   empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="256Mi"))]


def k8s_server_mount(sync: CompileCacheSync) -> k8s.core.v1.VolumeMountArgs:
    return k8s.core.v1.VolumeMountArgs(name=VOLUME, mount_path=sync.local_dir)


# ---------------------------------------------------------------------------
# Cloud Run: one sidecar restores, signals readiness on a loopback port, then saves.

CLOUD_RUN_CONTAINER = "compile-cache"
CLOUD_RUN_READY_PORT = 8091  # loopback only; the sidecar's startup probe, never the service's port
CLOUD_RUN_VOLUME_SIZE = "4Gi"  # in memory, counted against the instance's memory
CLOUD_RUN_RESTORE_SECONDS = 300  # how long the restore may take before the instance fails to start


def cloudrun_sidecar_script(sync: CompileCacheSync, health_url: str) -> str:
    """Restore, then listen on the ready port (python3 ships with gcloud), then save."""
    restore = restore_script(sync).replace("exit 0\n", "")
    ready = (f"python3 -m http.server {CLOUD_RUN_READY_PORT} --bind 127.0.0.1 --directory {_SCRATCH_DIR} "
             ">/dev/null 2>&1 &\n")
    return f"mkdir -p {_SCRATCH_DIR}\n" + restore + ready + save_script(sync, health_url)


def cloudrun_sidecar(bucket: pulumi.Input[str], sync: CompileCacheSync, health_url: str) -> dict:
    """The sidecar container of a cloudrunv2 Service template (the caller adds depends_ons on the server)."""
    period = 2
    return {
        "name": CLOUD_RUN_CONTAINER,
        "image": sync.image,
        "commands": ["/bin/sh", "-c", cloudrun_sidecar_script(sync, health_url)],
        "envs": [{"name": BUCKET_ENV, "value": bucket}, {"name": "CLOUDSDK_CONFIG", "value": _SCRATCH_DIR},
                 {"name": "HOME", "value": _SCRATCH_DIR}],
        "resources": {"limits": {"cpu": "1", "memory": "512Mi"}, "cpu_idle": False},
        "startup_probe": {"tcp_socket": {"port": CLOUD_RUN_READY_PORT}, "period_seconds": period,
                          "timeout_seconds": 1, "failure_threshold": CLOUD_RUN_RESTORE_SECONDS // period},
        "volume_mounts": [{"name": VOLUME, "mount_path": sync.local_dir}],
    }


def cloudrun_volume() -> dict:
    return {"name": VOLUME, "empty_dir": {"medium": "MEMORY", "size_limit": CLOUD_RUN_VOLUME_SIZE}}

