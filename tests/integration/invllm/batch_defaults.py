"""Ask vLLM which scheduler defaults an accelerator gets: run inside the vLLM venv, JSON in and out.

Reads ``[{"memory_bytes": ..., "device_name": "...", "tpu": false}, ...]`` on stdin and prints, for each,
the ``max_num_batched_tokens`` and ``max_num_seqs`` that ``EngineArgs.get_batch_defaults`` picks for the
OpenAI-compatible server. The CPU build's platform is told it is a GPU, or a TPU chip named as vLLM names
them ("V6E"), of that memory and name: the only platform answers the function reads.
Imports vLLM only; nothing from the project.
"""

from __future__ import annotations

import json
import sys


def defaults(case: dict) -> dict:
    import vllm.engine.arg_utils as arg_utils
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext

    platform = type(arg_utils.current_platform)
    platform.get_device_total_memory = classmethod(lambda cls, device_id=0: case["memory_bytes"])
    platform.get_device_name = classmethod(lambda cls, device_id=0: case["device_name"])
    platform.is_cpu = lambda self: False
    platform.is_tpu = lambda self: case.get("tpu", False)
    tokens, seqs = EngineArgs.get_batch_defaults(world_size=1)
    return {"max_num_batched_tokens": tokens[UsageContext.OPENAI_API_SERVER],
            "max_num_seqs": seqs[UsageContext.OPENAI_API_SERVER]}


def main() -> int:
    json.dump([defaults(case) for case in json.load(sys.stdin)], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
