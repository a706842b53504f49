"""What goes up and the push itself: the files of one commit, and the ``huggingface_hub`` calls that make it.

Details that matter:

- Nothing is written into the run directory. The upload is a map from path-in-repo to local
  file; what push generates (the card, merged weights, a re-pointed adapter config) goes to a
  temporary folder. ``dry_run=DIR`` writes exactly those files to ``DIR`` and uploads nothing.
- The token comes from ``HF_TOKEN`` or the login cache (``huggingface_hub.get_token``). There is
  no ``--token`` flag, so it never lands in shell history; it is handed to ``HfApi`` only, and
  every error message is scrubbed of it before anyone sees it.
- The repo id (huggingface_hub's own validator) and the token's presence are checked before any
  network call. 401, 403 and 404 become one-line :class:`~r1rl.errors.UserError` s, not retried.
- Connection failures and 408/429/5xx retry the whole push (create repo → branch → commit) with
  exponential backoff, a bounded number of times. A Hub commit is atomic, so a failed attempt
  leaves nothing half-pushed; if a commit landed but its reply was lost, the retry's pre-upload
  finds every file unchanged and ``create_commit`` makes no second commit.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from r1rl.errors import UserError
from r1rl.report.hub.card import build_card
from r1rl.report.hub.run import RunInfo, describe_run, is_hub_id, reward_code

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

WHATS = ("full", "adapter", "merged")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)

T = TypeVar("T")


@dataclass(frozen=True)
class Upload:
    files: dict[str, Path]  # path in the repo -> local file
    kind: str  # adapter | full | merged
    card: ModelCard


def prepare_upload(
    info: RunInfo,
    repo_id: str,
    work: Path,
    *,
    what: str | None = None,
    license: str = "apache-2.0",
    base_model: str | None = None,
) -> Upload:
    """The files to upload for ``info``; generated ones (card, merged model) are written under ``work``."""
    final = info.pushed.path / "final"
    files, kind = _model_files(final, what, work, base_model)
    card = build_card(info, files, kind, repo_id, license=license, base_model=base_model)
    card.save(work / "README.md")
    files["README.md"] = work / "README.md"
    files.update(reward_code(info)[0])  # the reward functions the run trained with, which the card links
    return Upload(dict(sorted(files.items())), kind, card)


def _model_files(
    final: Path, what: str | None, work: Path, base_model: str | None
) -> tuple[dict[str, Path], str]:
    is_adapter = (final / "adapter_config.json").is_file()
    if what == "adapter" and not is_adapter:
        raise UserError(f"{final} is a full model, not a PEFT adapter; push it with --what full")
    if what == "full" and is_adapter:
        raise UserError(
            f"{final} is a PEFT adapter; push it as it is with --what adapter, "
            "or merged into its base with --what merged"
        )
    # PEFT writes its own placeholder README.md into an adapter folder; the card replaces it
    files = {
        p.relative_to(final).as_posix(): p
        for p in sorted(final.rglob("*"))
        if p.is_file() and p.relative_to(final).as_posix() != "README.md" and not p.name.startswith(".")
    }
    if "tokenizer_config.json" not in files:
        raise UserError(
            f"{final} holds no tokenizer (tokenizer_config.json); r1rl stages save it beside the model"
        )
    kind = "adapter" if is_adapter else "full"
    if is_adapter and what == "merged":
        merged = work / "merged"
        _merge(final, merged)
        files = {k: v for k, v in files.items() if k not in ADAPTER_FILES}
        files.update({p.relative_to(merged).as_posix(): p for p in sorted(merged.rglob("*")) if p.is_file()})
        kind = "merged"
    elif is_adapter and base_model is not None:
        # the adapter records the absolute local path of its base; point it at the Hub copy instead
        config = json.loads(files["adapter_config.json"].read_text())
        config["base_model_name_or_path"] = base_model
        (work / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        files["adapter_config.json"] = work / "adapter_config.json"
    return files, kind


def _merge(adapter: Path, out: Path) -> None:
    from r1rl.models.factory import load_merged  # lazy: `r1rl push` parses its arguments before torch loads

    try:
        model = load_merged(str(adapter))
    except (OSError, ValueError) as e:
        base = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
        raise UserError(
            f"cannot merge {adapter}: its base model {base!r} did not load ({_first_line(e)})"
        ) from None
    model.save_pretrained(out)


def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    what: str | None = None,
    private: bool = False,
    revision: str | None = None,
    dry_run: str | Path | None = None,
    license: str = "apache-2.0",
    base_model: str | None = None,
    eval_results: str | Path | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    attempts: int = 5,
    retry_delay: float = 1.0,
    max_retry_delay: float = 30.0,
) -> str:
    """Push ``run_dir``'s model to ``repo_id``; returns the commit URL (for a dry run, the folder written).

    ``what``: ``None`` pushes ``final/`` as it is; ``"full"``/``"adapter"`` also check that it is
    one; ``"merged"`` merges an adapter into its base first (a full model goes up as it is).
    ``base_model`` names the Hub copy of a locally trained base (written into the card and into
    a pushed adapter's config). ``endpoint`` defaults to ``HF_ENDPOINT``, else huggingface_hub's.
    A push is tried ``attempts`` times on network errors, waiting ``retry_delay`` × 2^k seconds
    (at most ``max_retry_delay``) between tries.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if what is not None and what not in WHATS:
        raise UserError(f"what: {what!r} is not one of {', '.join(WHATS)}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise UserError(f"bad repo id {repo_id!r}: {_first_line(e)}") from None
    if base_model is not None and not is_hub_id(base_model):
        raise UserError(f"base model {base_model!r} is not a Hub model id (namespace/name)")
    if attempts < 1:
        raise UserError(f"attempts must be at least 1, got {attempts}")
    info = describe_run(run_dir, eval_results)
    out = Path(dry_run).expanduser() if dry_run is not None else None
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"dry run: {out} exists and is not an empty folder")
    token = _token() if out is None else None  # before a merge that may take minutes
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or _default_endpoint()).rstrip("/")
    with tempfile.TemporaryDirectory(prefix="r1rl-push-") as work:
        upload = prepare_upload(info, repo_id, Path(work), what=what, license=license, base_model=base_model)
        _warn_local_base(upload)
        if out is not None:
            for name, src in upload.files.items():
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, out / name)
            print(
                f"[push] dry run: wrote {len(upload.files)} files ({upload.kind}) to {out}; nothing uploaded"
            )
            return str(out)
        assert token is not None
        message = commit_message or f"r1rl: {info.pushed.stage} model ({upload.kind})"
        description = "Lineage: " + " → ".join(s.stage for s in info.lineage)
        try:
            url = _retrying(
                lambda: _commit(upload, repo_id, token, endpoint, private, revision, message, description),
                attempts=attempts,
                delay=retry_delay,
                max_delay=max_retry_delay,
                token=token,
            )
        except _push_errors() as e:
            raise _user_error(e, repo_id, endpoint, attempts, token) from None
    print(f"[push] {info.pushed.stage} ({upload.kind}, {len(upload.files)} files) → {url}")
    return url


def _push_errors() -> tuple[type[Exception], ...]:
    """What a failed push raises: HfHubHTTPError is an OSError; the rest are httpx2's (its HTTP client)."""
    import httpx2

    return (OSError, ValueError, httpx2.HTTPError)


def _default_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _token() -> str:
    """The token from ``HF_TOKEN`` or the login cache; never printed."""
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise UserError(
            "HF_HUB_OFFLINE is set, so the Hub cannot be reached; unset it to push (or use --dry-run)"
        )
    try:
        token = get_token()
    except Exception as e:  # an OIDC exchange that was asked for and failed
        raise UserError(f"could not obtain a Hugging Face token: {type(e).__name__}") from None
    if not token:
        raise UserError("no Hugging Face token: set HF_TOKEN to a write token or run `hf auth login`")
    return token


def _warn_local_base(upload: Upload) -> None:
    if upload.kind != "adapter":
        return
    base = json.loads(upload.files["adapter_config.json"].read_text()).get("base_model_name_or_path", "")
    if base and not is_hub_id(base):
        print(
            f"[push] warning: the adapter's base model is the local path {base}; others cannot load it. "
            "Push the base too and pass --base-model ID, or push with --what merged",
            file=sys.stderr,
        )


def _commit(
    upload: Upload,
    repo_id: str,
    token: str,
    endpoint: str,
    private: bool,
    revision: str | None,
    message: str,
    description: str,
) -> str:
    """One push attempt: create the repo (and branch) if needed, then one atomic commit of every file."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision is not None and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    # operations are mutated by create_commit, so every attempt builds fresh ones
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(src)) for name, src in upload.files.items()
    ]
    info = api.create_commit(
        repo_id, operations, commit_message=message, commit_description=description, revision=revision
    )
    return info.commit_url


def _retrying(
    fn: Callable[[], T],
    *,
    attempts: int,
    delay: float,
    max_delay: float,
    token: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``fn()``, retried on transient network errors with exponential backoff (``delay`` × 2^k)."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as e:
            if attempt == attempts or not _is_transient(e):
                raise
            wait = min(max_delay, delay * 2 ** (attempt - 1))
            reason = _scrub(_describe(e), token)
            print(
                f"[push] attempt {attempt}/{attempts} failed ({reason}); retrying in {wait:.2g}s",
                file=sys.stderr,
            )
            sleep(wait)
    raise AssertionError("unreachable")


def _status(e: BaseException) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None)


def _is_transient(e: BaseException) -> bool:
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(e, OfflineModeIsEnabled):
        return False
    if isinstance(e, HfHubHTTPError):
        return _status(e) in TRANSIENT_STATUS
    return isinstance(e, (httpx2.TransportError, ConnectionError, TimeoutError))


def _describe(e: BaseException) -> str:
    status = _status(e)
    return f"HTTP {status}" if status is not None else f"{type(e).__name__}: {_first_line(e)}"


def _user_error(e: Exception, repo_id: str, endpoint: str, attempts: int, token: str) -> UserError:
    """One line for a failed push, naming the repo and what to do; never the token."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    status = _status(e)
    server = _first_line(getattr(e, "server_message", None) or "") if isinstance(e, HfHubHTTPError) else ""
    detail = f": {server}" if server else ""
    if isinstance(e, UserError):
        msg = str(e)
    elif status == 401:
        msg = (
            f"the Hub rejected the token (401 Unauthorized) pushing to {repo_id}; "
            "set HF_TOKEN to a valid token or run `hf auth login`"
        )
    elif status == 403:
        msg = f"the token may not write to {repo_id} (403 Forbidden){detail}; use a token with write access"
    elif isinstance(e, RevisionNotFoundError):
        msg = f"revision not found in {repo_id}{detail}"
    elif isinstance(e, RepositoryNotFoundError) or status == 404:
        msg = f"repository {repo_id} not found, or not visible to this token (404){detail}"
    elif _is_transient(e):
        msg = f"could not push to {repo_id} at {endpoint} after {attempts} attempts ({_describe(e)})"
    elif status is not None:
        msg = f"the Hub refused the push to {repo_id} (HTTP {status}){detail}"
    else:
        msg = f"push to {repo_id} failed: {type(e).__name__}: {_first_line(e)}"
    return UserError(_scrub(msg, token))


def _first_line(e: BaseException | str) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text
