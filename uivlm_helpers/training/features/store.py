"""The on-disk cache of vision features: one folder per feature key with safetensors shards, a manifest
and the key, written atomically (temporary file, fsync, rename), repaired after an interrupted build, and
:func:`build_cache` to create or complete it."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save
from tqdm.auto import tqdm

from ...models.wrapper import VLMWrapper
from .key import CACHE_FORMAT, blake, feature_key, image_hash, key_hash, tensor_checksum
from .tower import compute_features

CACHE_SUBDIR = Path("cache") / "vision_features"
MANIFEST = "manifest.json"
KEY_FILE = "key.json"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class FeatureCache:
    """One feature-key folder: safetensors shards plus ``manifest.json`` and ``key.json``.

    Use :func:`build_cache` to create or complete one; :meth:`get` reads an entry (checksum verified on
    its first read in this process).
    """

    def __init__(self, folder: str | Path, key: dict | None = None, shard_bytes: int = 256 * 2 ** 20):
        self.folder = Path(folder)
        self.shard_bytes = shard_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        key_file = self.folder / KEY_FILE
        if key is not None and not key_file.is_file():
            _write_atomic(key_file, json.dumps(key, indent=2, sort_keys=True).encode())
        self.key = key if key is not None else (json.loads(key_file.read_text()) if key_file.is_file() else {})
        self.manifest = self._read_manifest()
        self._pending: dict[str, dict] = {}
        self._pending_bytes = 0
        self._handles: dict[str, object] = {}
        self._verified: set[str] = set()
        self.repaired: dict = {}

    # manifest ------------------------------------------------------------------------------------
    def _empty_manifest(self) -> dict:
        return {"format": CACHE_FORMAT, "shards": {}, "entries": {}, "build_s": 0.0}

    def _read_manifest(self) -> dict:
        path = self.folder / MANIFEST
        if not path.is_file():
            return self._empty_manifest()
        try:
            manifest = json.loads(path.read_text())
            assert manifest.get("format") == CACHE_FORMAT and {"shards", "entries"} <= set(manifest)
            return manifest
        except (ValueError, AssertionError):  # unreadable: start over (written atomically, so rare)
            return self._empty_manifest()

    def _write_manifest(self) -> None:
        self.manifest["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
        _write_atomic(self.folder / MANIFEST, json.dumps(self.manifest, indent=1, sort_keys=True).encode())

    @property
    def entries(self) -> dict:
        return self.manifest["entries"]

    def __contains__(self, image_key: str) -> bool:
        return image_key in self.manifest["entries"]

    def __len__(self) -> int:
        return len(self.manifest["entries"])

    # integrity ------------------------------------------------------------------------------------
    def repair(self, full: bool = False) -> dict:
        """Delete what an interrupted or damaged build left, so it is rebuilt instead of read.

        * temporary files (a write cut short) and shards the manifest does not list (written, but the
          process stopped before the manifest named them) are deleted;
        * a listed shard that is missing, has another length than the manifest says, fails to open as
          safetensors, lacks one of its entries or (``full=True``) fails its checksum is deleted and its
          entries dropped from the manifest.

        Returns what was removed: ``{"temporary", "orphan_shards", "bad_shards", "dropped_entries"}``.
        """

        report = {"temporary": [], "orphan_shards": [], "bad_shards": [], "dropped_entries": 0}
        shards = self.manifest["shards"]
        for path in sorted(self.folder.iterdir()):
            if ".tmp-" in path.name:
                path.unlink(missing_ok=True)
                report["temporary"].append(path.name)
            elif path.suffix == ".safetensors" and path.name not in shards:
                path.unlink(missing_ok=True)
                report["orphan_shards"].append(path.name)
        by_shard: dict[str, list[str]] = {}
        for image_key, entry in self.manifest["entries"].items():
            by_shard.setdefault(entry["shard"], []).append(image_key)
        for name in sorted(set(shards) | set(by_shard)):
            path = self.folder / name
            info = shards.get(name)
            ok = info is not None and path.is_file() and path.stat().st_size == info["bytes"]
            if ok:
                try:
                    with safe_open(str(path), "pt") as handle:
                        names = set(handle.keys())
                    ok = all(k in names for k in by_shard.get(name, []))
                except Exception:  # noqa: BLE001 - any unreadable shard is rebuilt
                    ok = False
            if ok and full:
                digest = blake()
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 22), b""):
                        digest.update(block)
                ok = digest.hexdigest() == info["blake2b"]
            if not ok:
                path.unlink(missing_ok=True)
                shards.pop(name, None)
                for image_key in by_shard.get(name, []):
                    self.manifest["entries"].pop(image_key, None)
                    report["dropped_entries"] += 1
                report["bad_shards"].append(name)
        if report["bad_shards"]:
            self._write_manifest()
        self._handles.clear()
        self.repaired = report
        return report

    # writing --------------------------------------------------------------------------------------
    def add(self, image_key: str, features: torch.Tensor, layout: dict | None = None) -> None:
        """Queue one image's features (and its :func:`image_layouts` entry); a shard is written once
        ``shard_bytes`` are queued."""
        features = features.detach().to("cpu").contiguous()
        self._pending[image_key] = {"features": features, "checksum": tensor_checksum(features),
                                    "layout": dict(layout or {})}
        self._pending_bytes += features.numel() * features.element_size()
        if self._pending_bytes >= self.shard_bytes:
            self.flush()

    def flush(self) -> None:
        """Write the queued entries as one shard (temporary file, fsync, rename), then the manifest."""
        if not self._pending:
            return

        index = 1 + max([int(n.split("-")[1].split(".")[0]) for n in self.manifest["shards"]] or [-1])
        name = f"shard-{index:05d}.safetensors"
        blob = save({k: v["features"] for k, v in self._pending.items()}, metadata={"format": str(CACHE_FORMAT)})
        _write_atomic(self.folder / name, blob)
        self.manifest["shards"][name] = {"bytes": len(blob), "blake2b": blake(blob).hexdigest(),
                                         "entries": len(self._pending)}
        for image_key, item in self._pending.items():
            features = item["features"]
            self.manifest["entries"][image_key] = {
                "shard": name, "tokens": int(features.shape[0]), "hidden": int(features.shape[-1]),
                "dtype": str(features.dtype).replace("torch.", ""), "blake2b": item["checksum"],
                "layout": item["layout"]}
        self._write_manifest()
        self._pending.clear()
        self._pending_bytes = 0

    def layout(self, image_key: str) -> dict | None:
        """The entry's image layout (``{"image_grid_thw": [t, h, w]}`` for Qwen), None when unknown."""
        entry = self.manifest["entries"].get(image_key) or self._pending.get(image_key)
        return entry.get("layout") if entry else None

    def drop(self, image_key: str) -> None:
        """Forget one entry (its bytes stay in the shard until the folder is rebuilt)."""
        if self.manifest["entries"].pop(image_key, None) is not None:
            self._write_manifest()

    # reading --------------------------------------------------------------------------------------
    def _handle(self, shard: str):
        if shard not in self._handles:
            self._handles[shard] = safe_open(str(self.folder / shard), "pt")
        return self._handles[shard]

    def get(self, image_key: str) -> torch.Tensor | None:
        """An entry's features, or None when absent or damaged (a damaged entry is dropped)."""
        entry = self.manifest["entries"].get(image_key)
        if entry is None:
            pending = self._pending.get(image_key)
            return pending["features"] if pending else None
        try:
            features = self._handle(entry["shard"]).get_tensor(image_key)
        except Exception:  # noqa: BLE001 - missing or unreadable shard
            features = None
        if features is not None and image_key not in self._verified:
            if (tuple(features.shape) != (entry["tokens"], entry["hidden"])
                    or tensor_checksum(features) != entry["blake2b"]):
                features = None
            else:
                self._verified.add(image_key)
        if features is None:
            self.drop(image_key)
        return features

    # size ------------------------------------------------------------------------------------------
    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())


def cache_root(run_dir=None, cache_dir=None) -> Path:
    """``cache_dir`` when given, else ``RUN_DIR/cache/vision_features``."""
    if cache_dir:
        return Path(cache_dir)
    if run_dir is None:
        raise ValueError("cache_root: give run_dir or cache_dir")
    return _run_folder(run_dir) / CACHE_SUBDIR


def _run_folder(source) -> Path:
    """A path from a path or a :class:`~uivlm_helpers.core.paths.RunPaths` (whose folder is ``.root``)."""
    return Path(source) if isinstance(source, (str, os.PathLike)) else Path(source.root)


def load_hash_index(root: Path) -> dict:
    try:
        return json.loads((root / "image_index.json").read_text())
    except (OSError, ValueError):
        return {}


def record_image_keys(records, root: Path | None = None, index: dict | None = None) -> list[str]:
    """Each record's :func:`image_hash`; image files already hashed (same path, size and mtime) are not
    decoded again (``image_index.json`` in the cache root, or the ``index`` dict given, updated in place)."""
    if index is None:
        index = load_hash_index(root) if root else {}
    keys, changed = [], False
    for record in records:
        image = record["image"]
        if isinstance(image, (str, Path)):
            path = str(Path(image).resolve())
            stat = os.stat(path)
            stamp = [stat.st_size, stat.st_mtime_ns]
            known = index.get(path)
            if known and known[:2] == stamp:
                keys.append(known[2])
                continue
            key = image_hash(image)
            index[path] = stamp + [key]
            changed = True
            keys.append(key)
        else:
            keys.append(image_hash(image))
    if root and changed:
        root.mkdir(parents=True, exist_ok=True)
        _write_atomic(root / "image_index.json", json.dumps(index).encode())
    return keys


def record_history_screens(wrapper: VLMWrapper, records) -> list:
    """The earlier screenshots the agent shows with ``records`` (``data.history_images``), as it shows them:
    the last ``history_images`` of each record's, scaled to the history pixel budget. A screenshot that is
    the history of several steps comes back once per step; its features are stored once (same pixels, same
    key)."""
    if not wrapper.history_images:
        return []
    screens = []
    for record in records:
        earlier = record.get("history_images") or []
        if earlier:
            screens.extend(wrapper.history_screens(earlier, _image_size(record["image"])))
    return screens


def _image_size(image) -> tuple[int, int]:
    if isinstance(image, Image.Image):
        return image.size
    with Image.open(image) as opened:  # reads the header, not the pixels
        return opened.size


def build_cache(wrapper: VLMWrapper, records, cache_dir: str | Path, *, mixed_precision: str = "no",
                batch_size: int = 8, shard_mb: float = 256, progress: bool = True, keep_stale: bool = False,
                verify: bool = False) -> FeatureCache:
    """Compute and store the vision features of every distinct screenshot in ``records`` not cached yet, the
    earlier screenshots the agent shows with them included (:func:`record_history_screens`).

    Args:
        cache_dir: the cache root (``RUN_DIR/cache/vision_features`` or the user's folder); the features
            go to ``<cache_dir>/<feature key hash>/``.
        mixed_precision: the run's ``training.mixed_precision`` (the tower runs under the same autocast).
        batch_size: images per vision forward while building.
        shard_mb: size of one safetensors shard.
        keep_stale: keep feature-key folders of other models / weights / pixel budgets (default: delete
            them, they would never be read again by this configuration).
        verify: also re-hash every shard against the manifest (reads the whole cache).

    Returns:
        The :class:`FeatureCache`, complete for ``records``; ``cache.build_report`` says what was reused,
        computed and repaired.
    """
    root = Path(cache_dir)
    key = feature_key(wrapper, mixed_precision)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        cache = _build_cache(wrapper, records, root, key, mixed_precision=mixed_precision, batch_size=batch_size,
                             shard_mb=shard_mb, progress=progress, keep_stale=keep_stale, verify=verify)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the tower's temporaries: do not keep them reserved through training
    return cache


class _locked:
    """An exclusive ``flock`` on a file: one process builds or repairs a cache root at a time."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.handle = open(self.path, "a")
        try:
            # lazy: fcntl exists on POSIX only; the cache lock is taken only while building the cache
            import fcntl

            fcntl.flock(self.handle, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no lock (one process at a time is then up to the user)
            pass
        return self

    def __exit__(self, *exc):
        self.handle.close()  # releases the lock


def _build_cache(wrapper, records, root: Path, key: dict, *, mixed_precision, batch_size, shard_mb, progress,
                 keep_stale, verify) -> FeatureCache:
    folder = root / key_hash(key)
    stale = [p for p in root.iterdir() if p.is_dir() and p != folder and (p / KEY_FILE).is_file()] \
        if root.is_dir() else []
    if stale and not keep_stale:
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        print(f"vision-feature cache: removed {len(stale)} stale folder(s) made for other weights, "
              f"pixel budget or settings: {', '.join(p.name for p in stale)}")
    cache = FeatureCache(folder, key, shard_bytes=int(shard_mb * 2 ** 20))
    repaired = cache.repair(full=verify)
    if repaired["temporary"] or repaired["orphan_shards"] or repaired["bad_shards"]:
        print(f"vision-feature cache: completing an interrupted or damaged cache ({repaired})")
    image_keys = record_image_keys(records, root)
    todo, seen = [], set()
    for record, image_key in zip(records, image_keys):
        if image_key not in cache and image_key not in seen:
            seen.add(image_key)
            todo.append((image_key, record["image"]))
    history_keys = []
    for screen in record_history_screens(wrapper, records):
        history_key = image_hash(screen)
        history_keys.append(history_key)
        if history_key not in cache and history_key not in seen:
            seen.add(history_key)
            todo.append((history_key, screen))
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="caching vision features", unit="img", disable=not progress or not todo)
    try:
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            features, layouts = compute_features(wrapper, [image for _, image in chunk], mixed_precision,
                                                 with_layouts=True)
            for (image_key, _), feats, layout in zip(chunk, features, layouts):
                cache.add(image_key, feats, layout)
            bar.update(len(chunk))
        cache.flush()
    finally:
        bar.close()
    cache.manifest["build_s"] = float(cache.manifest.get("build_s", 0.0)) + time.perf_counter() - start
    cache._write_manifest()
    distinct = len(set(image_keys) | set(history_keys))
    cache.build_report = {"records": len(records), "distinct_images": distinct,
                          "history_images": len(set(history_keys)),
                          "computed": len(todo), "reused": distinct - len(todo),
                          "seconds": time.perf_counter() - start, "repaired": repaired,
                          "stale_removed": [p.name for p in stale] if not keep_stale else []}
    return cache


def _find_cache(source) -> FeatureCache | None:
    if isinstance(source, FeatureCache):
        return source
    folder = _run_folder(source)
    for candidate in (folder, folder / CACHE_SUBDIR):
        if (candidate / KEY_FILE).is_file():
            return FeatureCache(candidate)
        if candidate.is_dir():
            found = sorted((p for p in candidate.iterdir() if (p / KEY_FILE).is_file()),
                           key=lambda p: (p / MANIFEST).stat().st_mtime if (p / MANIFEST).exists() else 0)
            if found:
                return FeatureCache(found[-1])
    return None


def describe_cache(source) -> dict:
    """What a vision-feature cache holds and its size on disk.

    Args:
        source: a :class:`FeatureCache`, a run folder / :class:`~uivlm_helpers.core.paths.RunPaths`
            (``RUN_DIR/cache/vision_features``), a cache root or a feature-key folder.

    Returns:
        ``{"folder", "images", "shards", "size_mib", "mib_per_image", "tokens_per_image", "hidden",
        "dtype", "build_s", "key"}`` (``{"folder": None, "images": 0}`` when there is no cache).
    """
    cache = _find_cache(source)
    if cache is None:
        return {"folder": None, "images": 0, "size_mib": 0.0}
    entries = list(cache.entries.values())
    size = cache.bytes_on_disk()
    tokens = [e["tokens"] for e in entries]
    return {"folder": str(cache.folder), "images": len(entries), "shards": len(cache.manifest["shards"]),
            "size_mib": round(size / 2 ** 20, 3),
            "mib_per_image": round(size / 2 ** 20 / len(entries), 4) if entries else None,
            "tokens_per_image": round(sum(tokens) / len(tokens), 1) if tokens else None,
            "hidden": entries[0]["hidden"] if entries else None,
            "dtype": entries[0]["dtype"] if entries else None,
            "build_s": round(float(cache.manifest.get("build_s", 0.0)), 2),
            "key": {k: cache.key.get(k) for k in ("family", "model_type", "pixel_budget", "vision_dtype",
                                                  "device", "mixed_precision")}}
