"""Copy one model revision from the Hugging Face Hub into the model bucket, once.

Runs as the weights-copy Cloud Run job (components/weights_copy.py), the only process that reads
the Hugging Face token (``HF_TOKEN``, from Secret Manager). Serving reads the copy from
``gs://<bucket>/<prefix>/`` and never needs the token.

    python3 weights_copy.py --repo meta-llama/Llama-3.1-8B-Instruct \\
        --revision 0e9e39f249a16976918f6564b8830bc894c89659 \\
        --bucket acme-llm-models --prefix models/meta-llama/Llama-3.1-8B-Instruct/0e9e39f2...

Idempotent: the last object written is ``<prefix>/_COMPLETE``, a JSON record of the repository,
the revision, the commit it resolved to and every file with its size. A run that finds a marker
for the same repository and revision whose files are all present with those sizes does nothing;
anything else (no marker, another revision, a missing or truncated file) copies again. Files go
one at a time through a temporary directory (Cloud Run jobs keep files in memory), so the job
needs memory for the largest file, not for the model.

Exit statuses: 0 copied or already complete; 1 the copy failed (the Hub or Cloud Storage could not
be read or written); 2 invalid input (arguments, a token the Hub refuses, no access to a gated
model, an unknown repository or revision); 3 internal error (a bug). No traceback unless --debug.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

MARKER = "_COMPLETE"
# Duplicate checkpoints some repositories ship next to the safetensors (e.g. Llama's consolidated
# .pth under original/); vLLM never reads them.
SKIPPED_PREFIXES = ("original/",)
TOKEN_ENV = "HF_TOKEN"

_REPO = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
_REVISION = re.compile(r"[\w.-]{1,128}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")


class InvalidInput(Exception):
    """Exit 2: the arguments, the token or the model reference are wrong."""


class CopyFailed(Exception):
    """Exit 1: the Hub or Cloud Storage failed while copying."""


@dataclass(frozen=True)
class Request:
    repo: str
    revision: str
    bucket: str
    prefix: str


def parse_args(argv: list[str]) -> tuple[Request, bool]:
    parser = argparse.ArgumentParser(prog="weights_copy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", required=True, help="Hugging Face model id, org/name")
    parser.add_argument("--revision", required=True, help="commit (40 hex digits) or tag/branch")
    parser.add_argument("--bucket", required=True, help="bucket name, without gs://")
    parser.add_argument("--prefix", required=True, help="object prefix of the copy, e.g. models/<org>/<name>/<revision>")
    parser.add_argument("--debug", action="store_true", help="print tracebacks of internal errors")
    args = parser.parse_args(argv)
    problems = []
    if not _REPO.fullmatch(args.repo):
        problems.append(f"--repo: got {args.repo!r}; give a Hugging Face model id like org/name")
    if not _REVISION.fullmatch(args.revision):
        problems.append(f"--revision: got {args.revision!r}; give a commit hash, tag or branch")
    bucket = args.bucket.removeprefix("gs://")
    if not _BUCKET.fullmatch(bucket):
        problems.append(f"--bucket: got {args.bucket!r}; give a bucket name (3-63 lowercase letters, digits, . _ -)")
    prefix = args.prefix.strip("/")
    if not prefix or ".." in prefix.split("/"):
        problems.append(f"--prefix: got {args.prefix!r}; give an object prefix such as models/org/name/<revision>")
    if problems:
        raise InvalidInput("; ".join(problems))
    return Request(args.repo, args.revision, bucket, prefix), args.debug


def _hub_error(error: Exception, request: Request, token_set: bool) -> Exception:
    """A Hub error as a sentence an operator can act on."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    status = getattr(getattr(error, "response", None), "status_code", None)
    model = f"{request.repo}@{request.revision}"
    if status == 401 and token_set:
        return InvalidInput(f"the Hugging Face Hub refused the token in {TOKEN_ENV} (HTTP 401) for {model}: the token is "
                            "wrong, expired or revoked; put a valid read token in the Secret Manager secret and run the job again")
    if isinstance(error, GatedRepoError) or status == 403:
        return InvalidInput(f"{request.repo} is gated and the token's account has no access (HTTP {status}): accept the "
                            f"licence on https://huggingface.co/{request.repo} with that account")
    if isinstance(error, RevisionNotFoundError):
        return InvalidInput(f"revision {request.revision!r} does not exist in {request.repo}; check modelRevision")
    if isinstance(error, RepositoryNotFoundError):
        hint = "" if token_set else f" (no token in {TOKEN_ENV}: a gated or private model needs one)"
        return InvalidInput(f"{request.repo} was not found on the Hub (HTTP {status}){hint}; check the model id")
    return CopyFailed(f"the Hugging Face Hub failed for {model}: {str(error).splitlines()[0][:200]}")


def hub_files(api: Any, request: Request, token_set: bool) -> tuple[str, dict[str, Optional[int]]]:
    """(commit, {file: size}) of the revision, skipped folders left out."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        info = api.model_info(request.repo, revision=request.revision, files_metadata=True)
    except HfHubHTTPError as error:
        raise _hub_error(error, request, token_set) from error
    files = {s.rfilename: s.size for s in (info.siblings or [])
             if not s.rfilename.startswith(SKIPPED_PREFIXES)}
    if not files:
        raise InvalidInput(f"{request.repo}@{request.revision} lists no files to copy")
    return info.sha or request.revision, files


def existing_copy(bucket: Any, request: Request) -> Optional[dict]:
    """The marker, if it records this repository and revision and every file it lists is present with its size."""
    marker = bucket.blob(f"{request.prefix}/{MARKER}")
    if not marker.exists():
        return None
    try:
        record = json.loads(marker.download_as_bytes())
    except ValueError:
        return None
    if record.get("repo") != request.repo or record.get("revision") != request.revision:
        return None
    present = {blob.name.removeprefix(request.prefix + "/"): blob.size
               for blob in bucket.list_blobs(prefix=request.prefix + "/")}
    files = record.get("files") or {}
    if not files or any(present.get(name) != size for name, size in files.items()):
        return None
    return record


def copy(request: Request, *, hub: Any, bucket: Any, token: Optional[str], log=print) -> dict:
    """Copy the revision unless a complete copy is there; returns the marker record."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    found = existing_copy(bucket, request)
    if found is not None:
        log(f"gs://{request.bucket}/{request.prefix}/ already holds {request.repo}@{request.revision} "
            f"({len(found['files'])} files, {found['total_bytes']} bytes); nothing to do")
        return found
    commit, listed = hub_files(hub, request, token_set=bool(token))
    log(f"copying {request.repo}@{request.revision} (commit {commit}, {len(listed)} files) "
        f"to gs://{request.bucket}/{request.prefix}/")
    started = time.monotonic()
    copied: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="weights-copy-") as scratch:
        for name in sorted(listed):
            try:
                local = Path(hf_hub_download(request.repo, name, revision=commit, local_dir=scratch, token=token or None,
                                             endpoint=hub.endpoint))
            except HfHubHTTPError as error:
                raise _hub_error(error, request, bool(token)) from error
            size = local.stat().st_size
            if listed[name] is not None and size != listed[name]:
                raise CopyFailed(f"{name}: the Hub listed {listed[name]} bytes but {size} arrived; run the job again")
            bucket.blob(f"{request.prefix}/{name}").upload_from_filename(str(local))
            copied[name] = size
            local.unlink()  # one file at a time in memory
            log(f"  {name}: {size} bytes")
    record = {"repo": request.repo, "revision": request.revision, "commit": commit, "files": copied,
              "total_bytes": sum(copied.values()), "seconds": round(time.monotonic() - started, 1)}
    # Written last: a copy without its marker is never taken for a complete one.
    bucket.blob(f"{request.prefix}/{MARKER}").upload_from_string(json.dumps(record, indent=1, sort_keys=True),
                                                               content_type="application/json")
    log(f"done: {record['total_bytes']} bytes in {record['seconds']} s; marker gs://{request.bucket}/{request.prefix}/{MARKER}")
    return record


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        request, debug = parse_args(argv)
        from google.api_core import exceptions as gcs_errors
        from google.cloud import storage  # type: ignore[attr-defined]  # namespace package mypy cannot resolve
        from huggingface_hub import HfApi

        token = os.environ.get(TOKEN_ENV) or None
        hub = HfApi(token=token or False)
        client = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT"))
        try:
            copy(request, hub=hub, bucket=client.bucket(request.bucket), token=token)
        except gcs_errors.Forbidden as error:
            raise CopyFailed(f"Cloud Storage refused access to gs://{request.bucket}/{request.prefix}/ "
                             f"({error.code}); the job's identity needs object access under that prefix") from error
        except gcs_errors.NotFound as error:
            raise InvalidInput(f"bucket {request.bucket!r} does not exist") from error
        except gcs_errors.GoogleAPIError as error:
            raise CopyFailed(f"Cloud Storage failed: {str(error).splitlines()[0][:200]}") from error
        return 0
    except SystemExit as exit_:  # argparse: usage errors exit 2, --help exits 0
        return int(exit_.code or 0)
    except InvalidInput as error:
        print(f"weights_copy: invalid input: {error}", file=sys.stderr)
        return 2
    except CopyFailed as error:
        print(f"weights_copy: copy failed: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - a bug is reported in one line unless --debug
        if _is_network_error(error):
            print(f"weights_copy: copy failed: could not reach the Hub or Cloud Storage: {error}", file=sys.stderr)
            return 1
        if debug:
            raise
        print(f"weights_copy: internal error (a bug): {type(error).__name__}: {error}; rerun with --debug", file=sys.stderr)
        return 3


def _is_network_error(error: BaseException) -> bool:
    """Connection and timeout errors of the HTTP stacks the two clients use (httpx2 for huggingface_hub
    2.x, requests for google-cloud-storage), recognised by name so that neither must be importable."""
    names = {f"{cls.__module__.split('.')[0]}.{cls.__name__}" for cls in type(error).__mro__}
    return bool(names & {"httpx2.TransportError", "httpx.TransportError", "requests.ConnectionError",
                         "requests.Timeout"})


if __name__ == "__main__":
    sys.exit(main())
