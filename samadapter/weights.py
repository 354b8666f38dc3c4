"""The model files of :mod:`samadapter.registry`: where they live and how to fetch and check them.

:data:`REGISTRY` holds one :class:`~samadapter.registry.WeightSpec` per file (SAM checkpoints,
open_clip ConvNeXt weights, Mask-Adapter checkpoints), by name. Code that needs a file asks
:func:`resolve_weights` for it by name.

Where files are looked for:
    * ``--weights-dir DIR`` (the ``weights_dir`` argument) when given, and only there;
    * otherwise ``$SAMADAPTER_HOME`` (default ``~/.cache/samadapter``), then ``./weights`` when
      that folder exists.

Missing files are downloaded into the first of those folders unless offline mode is on
(``offline=True``, ``--offline`` or ``SAMADAPTER_OFFLINE=1``).

Every URL can be replaced per entry with the environment variable
``SAMADAPTER_URL_<NAME>``, where ``<NAME>`` is the entry name upper-cased with every character
other than a letter or digit replaced by ``_`` (e.g. ``SAMADAPTER_URL_SAM_VIT_B``,
``SAMADAPTER_URL_DEMO``). A plain path (``/mirror/sam_vit_b_01ec64.pth``) or a ``file://`` URL
works too, which is handy for mirrors on a shared disk: the file is copied and checked like a
download.

Checksums: a file is checked against the sha256 (or the md5 prefix SAM's names carry) the
registry publishes. Most files have no published checksum, so every download also **records** the
sha256 of what it fetched in the file's sidecar ``.<filename>.sha256.json``; ``samadapter weights
verify`` and every later load compare the file with that record, so a file changed or damaged
since its download is caught. A file with neither (put in place by hand) is reported as
*unverified*, never as OK.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from samadapter.errors import ConfigError, OutputError, WeightsError
from samadapter.io.atomic import read_json_object, write_json_atomic
from samadapter.registry import MODELS, WeightSpec

HOME_ENV = "SAMADAPTER_HOME"
"""Environment variable naming the default weights folder."""
OFFLINE_ENV = "SAMADAPTER_OFFLINE"
"""Environment variable that turns offline mode on when set to 1 / true / yes / on."""
URL_ENV_PREFIX = "SAMADAPTER_URL_"
"""Prefix of the per-entry URL override variables (see :func:`url_env_var`)."""

CHUNK_SIZE = 1 << 20
"""Bytes read at a time when hashing and downloading (1 MiB)."""
DOWNLOAD_TIMEOUT_S = 60.0
"""Socket timeout of one network read during a download."""

_USER_AGENT = "samadapter-weights/0.1"
_TRUE_VALUES = frozenset({"1", "true", "yes", "on"})


REGISTRY: dict[str, WeightSpec] = {m.file.name: m.file for m in MODELS if m.file is not None}
"""Every model file of :mod:`samadapter.registry`, by name."""


# --------------------------------------------------------------------------------------------
# Registry look-ups
# --------------------------------------------------------------------------------------------


def get_spec(name: str) -> WeightSpec:
    """Look up a registry entry.

    Args:
        name: registry key, e.g. ``"sam_vit_b"``.

    Returns:
        The entry.

    Raises:
        ConfigError: the name is unknown (the message lists the valid names), or the entry is
            not supported yet (the message gives its note).
    """
    spec = REGISTRY.get(name)
    if spec is None:
        valid = ", ".join(sorted(REGISTRY))
        raise ConfigError(f"unknown weights name {name!r}; valid names: {valid}")
    if not spec.supported:
        raise ConfigError(f"weights {name!r} are not supported: {spec.note}")
    return spec


def url_env_var(name: str) -> str:
    """Name of the environment variable that overrides the URL of entry ``name``.

    Args:
        name: registry key, e.g. ``"sam_vit_b"`` or ``"tiny-random"``.

    Returns:
        e.g. ``"SAMADAPTER_URL_SAM_VIT_B"``, ``"SAMADAPTER_URL_TINY_RANDOM"``.
    """
    return URL_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def effective_url(spec: WeightSpec) -> str | None:
    """The URL to download ``spec`` from: its ``SAMADAPTER_URL_<NAME>`` override, else its own.

    An override without a scheme (no ``://``) is a local path and becomes a ``file://`` URL.

    Args:
        spec: registry entry.

    Returns:
        The URL, or None when the entry has none and no override is set.
    """
    override = os.environ.get(url_env_var(spec.name), "").strip()
    if override and "://" not in override:
        return Path(override).expanduser().resolve().as_uri()
    return override or spec.url


def _check_local_source(spec: WeightSpec, url: str) -> None:
    """For a ``file:`` URL, fail in one line unless it names an existing file.

    Raises:
        WeightsError: a ``file:`` URL with a host or a relative path, or naming a missing file
            or a folder.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "file":
        return
    where = (
        f"{url_env_var(spec.name)} / the registry"
        if os.environ.get(url_env_var(spec.name), "").strip()
        else "the registry"
    )
    if parts.netloc not in ("", "localhost"):
        raise WeightsError(
            f"cannot download {spec.filename} from {url}: a file:// URL needs an "
            f"absolute path (file:///path/to/{spec.filename})",
            hint=f"fix {where}, or give a plain path",
        )
    local = Path(urllib.request.url2pathname(parts.path))
    if local.is_dir():
        raise WeightsError(
            f"cannot download {spec.filename} from {url}: {local} is a folder",
            hint=f"name the file itself in {where}",
        )
    if not local.is_file():
        raise WeightsError(
            f"cannot download {spec.filename} from {url}: No such file: {local}",
            hint=f"fix {where}",
        )


# --------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------


def default_weights_dir() -> Path:
    """The folder downloads go to: ``$SAMADAPTER_HOME`` if set, else ``~/.cache/samadapter``."""
    home = os.environ.get(HOME_ENV, "").strip()
    if home:
        return Path(home).expanduser()
    return Path.home() / ".cache" / "samadapter"


def search_dirs(weights_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for weight files, in order.

    Args:
        weights_dir: an explicit folder (``--weights-dir``); when given it is the only one.

    Returns:
        ``[weights_dir]`` when given, else ``[default_weights_dir(), ./weights]`` where
        ``./weights`` (relative to the current directory) is included only if it exists.
    """
    if weights_dir is not None:
        return [Path(weights_dir).expanduser()]
    dirs = [default_weights_dir()]
    local = Path.cwd() / "weights"
    if local.is_dir():
        dirs.append(local)
    return dirs


def target_path(spec: WeightSpec, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where ``spec``'s file is downloaded to (the first search folder)."""
    return search_dirs(weights_dir)[0] / spec.filename


def find_file(spec: WeightSpec, weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Find ``spec``'s file in the search folders.

    Args:
        spec: registry entry.
        weights_dir: explicit folder (see :func:`search_dirs`).

    Returns:
        The first existing file named ``spec.filename``, or None.
    """
    for folder in search_dirs(weights_dir):
        candidate = folder / spec.filename
        if candidate.is_file():
            return candidate
    return None


def is_offline(offline: bool | None = None) -> bool:
    """Whether downloads are forbidden.

    Args:
        offline: the ``--offline`` flag; None when not given.

    Returns:
        True when the flag is set or ``SAMADAPTER_OFFLINE`` is 1 / true / yes / on.
    """
    if offline:
        return True
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE_VALUES


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------


class _Digests:
    """Incremental sha256 (always: it is what gets recorded) and md5 (when the spec's check needs
    it) of a file's bytes."""

    def __init__(self, spec: WeightSpec) -> None:
        self._sha = hashlib.sha256()
        self._md5 = (
            hashlib.md5(usedforsecurity=False) if spec.md5_prefix and not spec.sha256 else None
        )
        self.nbytes = 0

    @property
    def sha256(self) -> str:
        """The hex sha256 of the bytes seen so far."""
        return self._sha.hexdigest()

    def update(self, chunk: bytes) -> None:
        self.nbytes += len(chunk)
        self._sha.update(chunk)
        if self._md5 is not None:
            self._md5.update(chunk)

    def check(self, spec: WeightSpec, source: str, recorded: str | None = None) -> str:
        """Raise WeightsError if the bytes seen do not match ``spec``'s checksum.

        Args:
            spec: the entry whose checksum applies.
            source: where the bytes came from, for the message (a path or "from <url>").
            recorded: the sha256 recorded when the file was downloaded, checked when the
                registry publishes no checksum.

        Returns:
            what the bytes were checked against: ``"sha256"``, ``"md5 prefix"``, ``"sha256
            recorded at download"``, or ``"unverified"`` (nothing to check against).
        """
        if self.nbytes == 0:
            raise WeightsError(
                f"weight file {spec.filename} ({source}) is empty",
                hint="delete it and download it again",
            )
        if spec.sha256:
            actual = self._sha.hexdigest()
            if actual != spec.sha256.lower():
                raise _mismatch(spec, source, "sha256", spec.sha256.lower(), actual)
            return "sha256"
        if self._md5 is not None and spec.md5_prefix:
            actual = self._md5.hexdigest()
            if not actual.startswith(spec.md5_prefix.lower()):
                raise _mismatch(spec, source, "md5", f"{spec.md5_prefix.lower()}...", actual)
            return "md5 prefix"
        if recorded:
            actual = self._sha.hexdigest()
            if actual != recorded:
                raise WeightsError(
                    f"weight file {spec.filename} ({source}) changed since it was downloaded: "
                    f"recorded sha256 {recorded}, now {actual}",
                    hint=f"delete it and run `samadapter weights download {spec.name}`",
                )
            return "sha256 recorded at download"
        return "unverified"


def _mismatch(spec: WeightSpec, source: str, algo: str, expected: str, actual: str) -> WeightsError:
    return WeightsError(
        f"checksum mismatch for {spec.filename} ({source}): expected {algo} {expected}, "
        f"got {actual}",
        hint="the file is corrupt or not the right one; delete it and download it again",
    )


def verify_file(path: str | os.PathLike[str], spec: WeightSpec) -> str:
    """Check a file against ``spec``'s checksum.

    The published sha256 is checked when known, else the md5 prefix when known (SAM files), else
    the sha256 recorded when the file was downloaded (:func:`recorded_sha256`), else only that
    the file is non-empty. The file is hashed in 1 MiB chunks.

    Args:
        path: the file.
        spec: its registry entry.

    Returns:
        what it was checked against: ``"sha256"``, ``"md5 prefix"``, ``"sha256 recorded at
        download"`` or ``"unverified"`` (no published checksum and no record: only
        non-emptiness was checked).

    Raises:
        WeightsError: the file is missing, unreadable, empty or fails its checksum; the
            message names the file, the expected and the actual digest.
    """
    file = Path(path)
    digests = _Digests(spec)
    try:
        with file.open("rb") as fh:
            while chunk := fh.read(CHUNK_SIZE):
                digests.update(chunk)
    except FileNotFoundError:
        raise WeightsError(f"weight file not found: {file}") from None
    except OSError as exc:
        raise WeightsError(f"cannot read weight file {file}: {exc}") from None
    return digests.check(spec, str(file), recorded_sha256(file))


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _sidecar(file: Path) -> Path:
    return file.with_name(f".{file.name}.sha256.json")


def _read_sidecar(file: Path) -> dict[str, Any]:
    """The sidecar's content (``{}`` when missing or unreadable: it is a cache and a record, and
    a damaged one must not stop anything)."""
    return read_json_object(_sidecar(file)) or {}


def _write_sidecar(file: Path, data: dict[str, Any]) -> None:
    """Write the sidecar atomically; a folder that cannot be written is skipped."""
    with contextlib.suppress(OutputError):
        write_json_atomic(_sidecar(file), data)


def recorded_sha256(path: str | os.PathLike[str]) -> str | None:
    """The sha256 recorded when ``path`` was downloaded by samadapter, else ``None``."""
    record = _read_sidecar(Path(path)).get("downloaded")
    value = record.get("sha256") if isinstance(record, dict) else None
    return value if isinstance(value, str) and _HEX64.match(value) else None


def file_checksum(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, remembered in a sidecar ``.<name>.sha256.json`` beside it.

    Hashing a 2 GB checkpoint takes seconds, so the digest is stored with the file's size and
    modification time and recomputed only when those change (or the sidecar cannot be written).
    The sidecar's download record (:func:`recorded_sha256`) is kept when the digest is updated.

    Args:
        path: the file.

    Returns:
        the hex sha256 digest.
    """
    file = Path(path)
    stat = file.stat()
    data = _read_sidecar(file)
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if {k: data.get(k) for k in stamp} == stamp and isinstance(data.get("sha256"), str):
        return str(data["sha256"])
    digest = hashlib.sha256()
    with file.open("rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            digest.update(chunk)
    value = digest.hexdigest()
    _write_sidecar(file, {**data, **stamp, "sha256": value})
    return value


def _record_download(file: Path, sha256: str, url: str) -> None:
    """Record what a download fetched (and prime the digest cache with it)."""
    stat = file.stat()
    _write_sidecar(
        file,
        {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": sha256,
            "downloaded": {"sha256": sha256, "url": url},
        },
    )


def check_recorded(path: str | os.PathLike[str], spec: WeightSpec) -> None:
    """Compare a file with the sha256 recorded at its download (no-op without a record).

    Uses the cached digest (:func:`file_checksum`), so it costs a hash only when the file's size
    or modification time changed.

    Raises:
        WeightsError: the file is not what was downloaded.
    """
    recorded = recorded_sha256(path)
    if recorded is None:
        return
    actual = file_checksum(path)
    if actual != recorded:
        raise WeightsError(
            f"weight file {path} changed since it was downloaded: recorded sha256 {recorded}, "
            f"now {actual}",
            hint=f"delete it and run `samadapter weights download {spec.name}`, "
            f"or delete {_sidecar(Path(path)).name} to keep this file",
        )


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def download(spec: WeightSpec, dest_dir: str | os.PathLike[str], progress: bool = True) -> Path:
    """Download ``spec``'s file into ``dest_dir`` and verify it.

    Streams the URL (:func:`effective_url`; redirects followed, ``file://`` allowed) into
    ``dest_dir/.<filename>.part``, checks it (:func:`verify_file` rules) and only then renames
    it to ``dest_dir/<filename>``. A failed, corrupt or interrupted download leaves no file
    under the final name and removes the ``.part`` file.

    Args:
        spec: registry entry.
        dest_dir: folder to download into (created if missing).
        progress: show a progress bar (bytes, speed, ETA) on stderr.

    Returns:
        Path of the downloaded file.

    Raises:
        WeightsError: no URL, network / HTTP / disk error, or checksum mismatch.
    """
    url = effective_url(spec)
    if not url:
        raise WeightsError(
            f"no download URL for {spec.filename}", hint=f"set {url_env_var(spec.name)}"
        )
    _check_local_source(spec, url)
    folder = Path(dest_dir).expanduser()
    final = folder / spec.filename
    part = folder / f".{spec.filename}.part"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot create weights folder {folder}: {exc}") from None

    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    digests = _Digests(spec)
    try:
        with (
            urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response,
            part.open("wb") as out,
            _progress_bar(progress) as bar,
        ):
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            task = bar.add_task(spec.filename, total=total)
            while chunk := response.read(CHUNK_SIZE):
                out.write(chunk)
                digests.update(chunk)
                bar.update(task, advance=len(chunk))
        if total is not None and digests.nbytes != total:
            raise WeightsError(
                f"download of {spec.filename} from {url} is incomplete: got {digests.nbytes} "
                f"of {total} bytes"
            )
        digests.check(spec, f"downloaded from {url}")
        os.replace(part, final)
        _record_download(final, digests.sha256, url)
    except WeightsError:
        _remove_quietly(part)
        raise
    except urllib.error.HTTPError as exc:
        _remove_quietly(part)
        raise WeightsError(
            f"cannot download {spec.filename} from {url}: HTTP {exc.code} {exc.reason}"
        ) from None
    except urllib.error.URLError as exc:
        _remove_quietly(part)
        raise WeightsError(f"cannot download {spec.filename} from {url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        _remove_quietly(part)
        raise WeightsError(f"cannot download {spec.filename} from {url}: {exc}") from None
    except BaseException:  # KeyboardInterrupt and the like: clean up, then let it through.
        _remove_quietly(part)
        raise
    return final


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Resolve
# --------------------------------------------------------------------------------------------

_RESOLVE_HINT = "download them on a machine with internet, or pass --weights-dir DIR"
_FILE_FLAGS: dict[str, str] = {
    "sam": "--sam-checkpoint",
    "sam2": "--sam-checkpoint",
    "adapter": "--adapter-checkpoint",
    "clip": "--clip-checkpoint",
}
"""The flag that names one file of each kind (only those of the missing files are suggested:
``classify`` has no ``--sam-checkpoint``)."""


def _resolve_hint(kinds: Sequence[str]) -> str:
    flags = list(dict.fromkeys(_FILE_FLAGS[k] for k in kinds if k in _FILE_FLAGS))
    return " / ".join([_RESOLVE_HINT, *(f"{flag} PATH" for flag in flags)])


def resolve_weights(
    names: Sequence[str],
    weights_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Find (and download when allowed) the files of several registry entries.

    Args:
        names: registry keys.
        weights_dir: explicit folder (see :func:`search_dirs`); downloads go to it, else to
            :func:`default_weights_dir`.
        offline: forbid downloads (see :func:`is_offline`).
        progress: show download progress bars.

    Returns:
        ``{name: path}``.

    Raises:
        ConfigError: an unknown or unsupported name.
        WeightsError: a present file that changed since samadapter downloaded it
            (:func:`check_recorded`); or one error for all files that are missing or failed to
            download, listing each as ``<filename> from <url> -> put it at <path>`` with the
            reason.
    """
    specs = [get_spec(name) for name in names]
    no_download = is_offline(offline)
    found: dict[str, Path] = {}
    problems: list[str] = []
    missing_kinds: list[str] = []
    for spec in specs:
        path = find_file(spec, weights_dir)
        if path is not None:
            check_recorded(path, spec)
            found[spec.name] = path
            continue
        dest = target_path(spec, weights_dir)
        url = effective_url(spec)
        where = f"{spec.filename} from {url or '<no URL>'} -> put it at {dest}"
        if no_download:
            missing_kinds.append(spec.kind)
            problems.append(where)
            continue
        if not url:
            missing_kinds.append(spec.kind)
            problems.append(f"{where} (no download URL; set {url_env_var(spec.name)})")
            continue
        try:
            found[spec.name] = download(spec, dest.parent, progress=progress)
        except WeightsError as exc:
            reason = exc.message.split(f"{url}: ", 1)[-1] if url else exc.message
            missing_kinds.append(spec.kind)
            problems.append(f"{where} (download failed: {reason})")
    if problems:
        count = len(problems)
        noun = "weight file is" if count == 1 else "weight files are"
        mode = " (offline mode)" if no_download else ""
        raise WeightsError(
            f"{count} {noun} missing{mode}: " + "; ".join(problems), _resolve_hint(missing_kinds)
        )
    return found
