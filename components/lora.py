"""Where a LoRA adapter comes from, and the `lora_id` a request sends for it.

A Vertex AI predict request's `lora_id` is "the path to the LoRA weights: a Cloud Storage
bucket or a Hugging Face repository", and works only when the server runs with --enable-lora
(Vertex AI, "vLLM serving for text-only and multimodal language models on Cloud GPUs", the
text-only prediction parameters:
https://cloud.google.com/vertex-ai/generative-ai/docs/open-models/vllm/use-vllm).

An adapter is configured as an object prefix in the model bucket (`loras/support-v3`), or as
`hf://<org>/<repo>` for a Hub repository: the scheme of huggingface_hub's file system, written
out so that a repository id can never be mistaken for a prefix. Plain Python, so the config,
the components and the client share these rules without importing Pulumi.
"""

from __future__ import annotations

import re
from typing import Optional

HUB_ADAPTER_SCHEME = "hf://"
HUB_REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_hub_adapter(source: str) -> bool:
    return source.startswith(HUB_ADAPTER_SCHEME)


def adapter_source_problem(source: str) -> Optional[str]:
    """Why one configured adapter source is unusable, or None."""
    if is_hub_adapter(source):
        if HUB_REPO.fullmatch(source[len(HUB_ADAPTER_SCHEME):]):
            return None
        return f"{source!r} is not a Hugging Face repository; write hf://<org>/<repo>"
    if not source.strip("/") or source.startswith("/") or "://" in source:
        return (f"{source!r} is neither an object prefix in the model bucket (e.g. loras/support-v3) nor "
                "hf://<org>/<repo>; adapters in other buckets are not readable by the serving identity")
    return None


def adapter_path(bucket: Optional[str], source: str) -> str:
    """The `lora_id` a request sends: the adapter's gs:// path, or its Hub repository id."""
    if is_hub_adapter(source):
        return source[len(HUB_ADAPTER_SCHEME):]
    return f"gs://{bucket}/{source.strip('/')}"


def is_literal_path(value: str) -> bool:
    """Is a client's `--lora` value already a path (gs://... or <org>/<repo>) rather than a name?"""
    return value.startswith("gs://") or bool(HUB_REPO.fullmatch(value))
