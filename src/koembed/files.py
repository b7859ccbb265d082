"""Files koembed writes: atomic outputs, staged folders, and checksummed manifests.

Every file koembed writes appears complete or not at all (:func:`atomic_open`, :func:`staged_folder`).
Every folder koembed reads back (an index version, an ONNX export, a shard of stored embeddings) is described
by a JSON manifest that lists its files with their sha256; :func:`read_manifest` and :func:`verify_files` are
the one way those are read and checked, each caller raising its own error class with its own remedy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from koembed.errors import KoembedError


def _umask() -> int:
    """The process umask, read without changing it (os.umask can only be read by setting it, which races with
    any thread creating a file at that moment). Linux shows it in /proc; elsewhere assume the usual 022."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _open_mode(path: str | Path, mode: int) -> None:
    """Give ``path`` the explicit ``mode`` less the umask: what open()/mkdir() would have made (mkstemp/mkdtemp
    make 0600/0700, which another user, e.g. a server, could not read)."""
    os.chmod(path, mode & ~_umask())


def staging_dir(parent: str | Path, prefix: str, suffix: str = "") -> Path:
    """A new, uniquely named folder in ``parent`` to build a result in, then rename into place."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    _open_mode(folder, 0o777)
    return folder


def fsync_path(path: Path) -> None:
    """Flush a file or folder to disk, so a renamed folder or manifest survives a power loss."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - folders cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def require_empty_folder(path: str | Path, error: type[KoembedError], overwrite: bool = False,
                       ignore: Iterable[str] = ()) -> Path:
    """``path`` (expanded) if it is absent or an empty folder (files named in ``ignore`` aside), or if
    ``overwrite`` allows replacing it; otherwise ``error`` saying so, before any work is done."""
    path = Path(path).expanduser()
    ignored = set(ignore)
    if path.exists() and not overwrite and (not path.is_dir() or any(p.name not in ignored for p in path.iterdir())):
        raise error(f"{path} exists and is not empty: choose a new folder" + (" (or --overwrite)" if not ignored
                                                                                 else ""))
    return path


@contextmanager
def staged_folder(target: str | Path, *, replace: bool = False, durable: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name beside ``target``; rename it to ``target`` if the block succeeds.

    A failure inside the block removes the staged folder and leaves ``target`` as it was. ``replace`` removes
    an existing ``target`` just before the rename (otherwise it must not exist or be empty). ``durable``
    fsyncs the staged folder and the parent, for folders that a manifest will point at.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = staging_dir(target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        yield stage
        if durable:
            fsync_path(stage)
        if replace and target.exists():
            shutil.rmtree(target)
        os.replace(stage, target)
        if durable:
            fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; rename it over ``path`` only if the block succeeds.

    A crash or exception inside the block leaves ``path`` untouched (the old file, or nothing).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    _open_mode(tmp, 0o666)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON, atomically."""
    with atomic_open(path) as handle:
        json.dump(obj, handle, ensure_ascii=False, indent=2)
        handle.write("\n")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> list[int]:
    """Write one JSON object per line, atomically; the byte offset where each line starts."""
    offsets, at = [], 0
    with atomic_open(path, "wb") as handle:
        for row in rows:
            line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
            handle.write(line)
            offsets.append(at)
            at += len(line)
    return offsets


# --------------------------------------------------------------------------- checksummed manifests


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def checksums(folder: Path, names: Iterable[str]) -> dict[str, str]:
    """``{name: sha256}`` of files in ``folder``: what a manifest records."""
    return {name: sha256_file(folder / name) for name in names}


SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def plain_name(name: Any, error: type[KoembedError], where: str, remedy: str) -> str:
    """``name`` if it names an entry directly inside a folder (no separator, not ``.``/``..``, not absolute, no
    NUL); else ``error``. A manifest's names are joined to its folder, so this keeps every read inside it."""
    if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name
            or Path(name).is_absolute()):
        raise error(f"{where}: {name!r} is not a plain name inside the folder; {remedy}")
    return name


def inside(folder: Path, name: Any, error: type[KoembedError], where: str, remedy: str) -> Path:
    """``folder / name`` for a :func:`plain_name` that also resolves inside ``folder`` (no symlink out of it)."""
    path = folder / plain_name(name, error, where, remedy)
    if path.resolve().parent != folder.resolve():
        raise error(f"{where}: {name!r} leads outside {folder}; {remedy}")
    return path


def listed_files(files: Any, expected: Collection[str] | None, error: type[KoembedError], where: str,
                 remedy: str) -> dict[str, str]:
    """A manifest's ``{name: sha256}``, checked to list exactly ``expected`` (None: any names), each a plain name
    with a sha256.

    Why exactly: a manifest that lists fewer files (``{}``) would let :func:`verify_files` pass while an
    unlisted file was changed, and one that lists more could point reads elsewhere.
    """
    if not isinstance(files, Mapping):
        raise error(f"{where}: 'files' must map each file name to its sha256; {remedy}")
    for name, digest in files.items():
        plain_name(name, error, where, remedy)
        if not isinstance(digest, str) or not SHA256_RE.match(digest):
            raise error(f"{where}: the sha256 of {name!r} is not 64 hex digits; {remedy}")
    expected = set(files) if expected is None else set(expected)
    missing, extra = sorted(expected - set(files)), sorted(set(files) - expected)
    if missing or extra:
        problems = ([f"does not list {', '.join(missing)}"] if missing else []) + \
                   ([f"lists unexpected {', '.join(extra)}"] if extra else [])
        raise error(f"{where}: 'files' {' and '.join(problems)}; {remedy}")
    return dict(files)


def first_damaged(folder: Path, files: Mapping[str, str]) -> tuple[Path, str] | None:
    """The first of ``files`` (``{name: sha256}``) in ``folder`` that is ``missing`` or ``altered``, or None."""
    for name, expected in files.items():
        path = folder / str(name)
        if not path.is_file():
            return path, "missing"
        if sha256_file(path) != expected:
            return path, "altered"
    return None


def verify_files(folder: Path, files: Any, manifest: str, error: type[KoembedError],
                 remedy: str, *, expected: Collection[str] | None = None) -> None:
    """Raise ``error`` naming the first missing or altered file of ``files``; ``remedy`` says what to do.

    ``expected``: the names the manifest must list, no more and no fewer (:func:`listed_files`); every name
    must be a plain name inside ``folder`` either way.
    """
    files = listed_files(files, expected, error, manifest, remedy)
    problem = first_damaged(folder, files)
    if problem is None:
        return
    path, kind = problem
    if kind == "missing":
        raise error(f"{path} is missing; {remedy}")
    raise error(f"{path} does not match its sha256 in {manifest} (altered or truncated): {remedy}")


def remove_staged(folder: Path) -> None:
    """Remove the temporary files and folders (``.NAME.*.tmp``) that a killed :func:`atomic_open` or
    :func:`staged_folder` left in ``folder``. Call it only while no other writer uses ``folder``."""
    for entry in folder.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(".tmp"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def read_manifest(path: Path, error: type[KoembedError], *, format: str | None, version: int,
                  remedy: str, older: Collection[int] = (), version_remedy: str | None = None) -> dict[str, Any]:
    """A manifest as a dict, checked to be a JSON object of ``format`` (None: no format field) and ``version``
    or one of the ``older`` versions the caller still reads. Any other ``format_version`` (newer, unknown, not an
    integer) is ``error`` with ``version_remedy`` (default ``remedy``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: unreadable manifest ({exc}); {remedy}") from exc
    if not isinstance(data, dict) or (format is not None and data.get("format") != format):
        raise error(f"{path}: not a {format or 'koembed'} manifest; {remedy}")
    found = data.get("format_version")
    readable = sorted({version, *older})
    if type(found) is not int or found not in readable:
        reads = f"version {version}" if len(readable) == 1 else f"versions {', '.join(map(str, readable))}"
        newer = " (written by a newer koembed)" if type(found) is int and found > version else ""
        raise error(f"{path}: format version {found!r}{newer} is not supported by this koembed (it reads {reads}); "
                    f"{version_remedy or remedy}")
    return data
