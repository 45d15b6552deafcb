"""Run a real vLLM server on a CPU-only machine.

Used by the integration suite and by the benchmark command. One module per job:

* ``venv``: ``ensure_vllm_venv`` builds (once) a cached virtualenv holding the CPU
  build of vLLM, separate from the project's own virtualenv.
* ``models``: ``write_tiny_llama`` / ``write_dummy_model`` write small model directories
  (the tiny one with random weights, the dummy one with no weights at all, for
  ``--load-format dummy``).
* ``in_venv``: what runs under the vLLM venv's interpreter (the model writer and vLLM's own
  argument parser); standard library only at import, so the file doubles as a script.
* ``server``: ``LocalServer`` starts a server process bound to 127.0.0.1, waits for
  ``/health`` within a time limit and always kills the whole process group.
* ``cpu``: ``replace_for_cpu`` turns a server command rendered for a GPU/TPU
  deployment into one this machine can run, and reports every change;
  ``check_server_args`` runs the installed vLLM's own argument parser over
  argument lists without starting a server.

CLI (``__main__``)::

    python -m tools.localvllm ensure              # prints the venv's python
    python -m tools.localvllm tiny-model DEST     # writes the tiny model
"""

from tools.localvllm.cpu import (
    CPU_MAX_MODEL_LEN,
    CPU_UNSUPPORTED_FLAGS,
    check_server_args,
    replace_env_for_cpu,
    replace_for_cpu,
)
from tools.localvllm.models import write_dummy_model, write_tiny_llama
from tools.localvllm.server import LOOPBACK, LocalServer, ServerStartError, free_port
from tools.localvllm.venv import (
    DEFAULT_TORCH_VERSION,
    DEFAULT_VLLM_VERSION,
    cache_root,
    ensure_vllm_venv,
    vllm_venv_dir,
    vllm_venv_python,
)

__all__ = [
    "CPU_MAX_MODEL_LEN", "CPU_UNSUPPORTED_FLAGS", "DEFAULT_TORCH_VERSION", "DEFAULT_VLLM_VERSION", "LOOPBACK",
    "LocalServer", "ServerStartError", "cache_root", "check_server_args", "ensure_vllm_venv", "free_port",
    "replace_env_for_cpu", "replace_for_cpu", "vllm_venv_dir", "vllm_venv_python", "write_dummy_model",
    "write_tiny_llama",
]
