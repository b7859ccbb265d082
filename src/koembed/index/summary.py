"""What ``koembed index info`` prints: a short, readable summary of a verified manifest of either store.

The manifest itself (hashes, term-id schemes, average lengths) is for machines; ``koembed index info --json``
prints it whole. A reader first asks how many passages, which model (and prompts), which lexical fields, how the
halves are fused, how big it is on disk, and which versions wrote it.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from koembed.index.manifest import describe_mode
from koembed.lexical import LEGACY_ANALYZER


def _size(nbytes: int) -> str:
    if nbytes < 1024:
        return f"{nbytes} B"
    value = nbytes / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def disk_sizes(info: dict[str, Any]) -> dict[str, int]:
    """Bytes on disk by part: each file of a FAISS index's current version, or a Qdrant local-mode storage folder
    (a Qdrant server's collection is not on this disk: no entry). ``total`` when there is any part."""
    index_dir = Path(info["path"])
    sizes: dict[str, int] = {}
    if info.get("store") == "qdrant":
        local = info.get("local_path")
        if local is not None:
            folder = Path(local) if Path(local).is_absolute() else index_dir / local
            if folder.is_dir():
                sizes["qdrant storage"] = _folder_bytes(folder)
    else:
        version = index_dir / info.get("version_dir", "")
        for name in info.get("files", {}):
            if (version / name).is_file():
                sizes[name] = (version / name).stat().st_size
    if sizes:
        sizes["total"] = sum(sizes.values())
    return sizes


def index_summary(info: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of :func:`koembed.index.index_info`'s dict, in reading order."""
    counts, model, bm25 = info.get("counts", {}), info.get("model", {}), info.get("bm25", {})
    qdrant = info.get("store") == "qdrant"
    where = (f"qdrant collection {info.get('collection')!r}" + (f" at {info['url']}" if info.get("url") else
                                                                 " (local mode)")) if qdrant else "faiss folder"
    rows = [("index", f"{info['path']} ({where})")]
    passages = f"{counts.get('passages', '?')}"
    if counts.get("deleted"):
        passages += f" ({counts['deleted']} deleted)"
    if qdrant and "collection_now" in info:
        now = info["collection_now"]
        passages += f"; the collection holds {now.get('points')} points now ({now.get('status')})"
    rows.append(("passages", passages))
    resolved = model.get("resolved")
    rows.append(("model", f"{model.get('name')}" + (f" ({resolved})" if resolved and resolved != model.get("name")
                                                     else "") + f", backend {model.get('backend', 'torch')}"))
    prompts = model.get("prompts") or {}
    rows.append(("prompts", ", ".join(f"{role} {text!r}" for role, text in prompts.items() if text) or "none"))
    dense = f"{info.get('dimension')} dimensions, {info.get('similarity', 'cosine')}"
    rows.append(("dense", dense + (f", {info['kind']}" if "kind" in info else "")))
    weights = bm25.get("weights") or {"unigram": 1.0}
    rows.append(("lexical", "BM25 fields " + ", ".join(f"{f}={w:g}" for f, w in weights.items())
                 + f" (normalization {bm25.get('normalization', 'none')}, k1 {bm25.get('k1')}, b {bm25.get('b')})"))
    user_dict = bm25.get("user_dict")
    rows.append(("analyzer", bm25.get("analyzer", LEGACY_ANALYZER)
                 + (f" ({bm25['analyzer_version']})" if bm25.get("analyzer_version") else "")
                 + (f"; user dictionary {user_dict.get('file')}, {user_dict.get('entries')} entries, sha256 "
                    f"{str(user_dict.get('sha256'))[:12]}..." if isinstance(user_dict, dict) else "")))
    rows.append(("default search", describe_mode(SimpleNamespace(**info))))
    fusion = info.get("fusion")
    if fusion:
        weights_text = f" @{','.join(f'{w:g}' for w in fusion['weights'])}" if fusion.get("weights") else ""
        rows.append(("fusion", f"{fusion.get('fusion')}{weights_text}"
                     + (f", k={fusion['rrf_k']}" if fusion.get("fusion") == "rrf" else "")))
    if info.get("m3"):
        rows.append(("bge-m3", "sparse and colbert vectors stored"))
    sizes = disk_sizes(info)
    rows.append(("on disk", ", ".join(f"{name} {_size(n)}" for name, n in sizes.items()) or "on the Qdrant server"))
    versions = [f"koembed {info.get('koembed_version') or '?'}", f"format {info.get('format_version')}"]
    versions += [f"{lib} {info[key]}" for lib, key in (("faiss", "faiss_version"),
                                                       ("qdrant-client", "qdrant_client_version")) if info.get(key)]
    if bm25.get("kiwipiepy_version"):
        versions.append(f"kiwipiepy {bm25['kiwipiepy_version']}")
    rows.append(("versions", ", ".join(versions)))
    rows.append(("updated", f"{info.get('updated')} (created {info.get('created')})"))
    return rows
