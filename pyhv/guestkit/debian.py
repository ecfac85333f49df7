"""Debian packages for the guest, fetched with ``apt-get download`` and unpacked with
``dpkg-deb -x`` into pyhv's cache; nothing is installed on the host.

Downloads live apart from the built kits, so a change to the kit's own files rebuilds without
downloading again. Which versions to use is decided once per state of apt's package lists
(``apt-get update`` changes them) and remembered in ``resolved.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote

from pyhv.errors import NotFoundError, PyhvError
from pyhv.guestkit import libraries

KERNEL_META = "linux-image-cloud-amd64"
AGENT = "qemu-guest-agent"
BUSYBOX = "busybox-static"
AGENT_PROGRAM = "usr/sbin/qemu-ga"
APT_LISTS = Path("/var/lib/apt/lists")
_MAX_EXPANSIONS = 20


class AptError(PyhvError):
    """apt-get or dpkg-deb failed; the message carries their last line of output."""


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str
    filename: str

    @property
    def pin(self) -> str:
        return f"{self.name}={self.version}"


@dataclass(frozen=True)
class Resolved:
    """The packages of one kit; ``kernel`` names the versioned kernel image package."""

    kernel: str
    packages: tuple[Package, ...]

    def get(self, name: str) -> Package:
        for pkg in self.packages:
            if pkg.name == name:
                return pkg
        raise NotFoundError(f"package {name} is not among the guest kit's packages")


def parse_deb_filename(filename: str) -> Package:
    """``name_version_arch.deb`` as apt-get download writes it (the epoch's ``:`` as ``%3a``)."""
    stem = filename.removesuffix(".deb")
    parts = stem.split("_")
    if len(parts) != 3 or not filename.endswith(".deb"):
        raise AptError(f"unexpected package file name {filename!r}")
    name, version, arch = parts
    return Package(name, unquote(version), arch, filename)


def parse_depends(field: str) -> list[str]:
    """Package names of a Depends field: first alternative, versions and ``:any`` dropped."""
    names = []
    for clause in field.split(","):
        first = clause.split("|")[0].strip()
        name = first.split("(")[0].split(":")[0].strip()
        if name:
            names.append(name)
    return names


def apt_lists_stamp(lists: Path | None = None) -> str:
    """A fingerprint of apt's package lists: it changes when ``apt-get update`` brings news."""
    lists = lists or APT_LISTS
    digest = hashlib.sha256()
    if lists.is_dir():
        for entry in sorted(lists.iterdir()):
            if entry.is_file():
                st = entry.stat()
                digest.update(f"{entry.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as err:
        raise AptError(f"{argv[0]} not found; the guest kit needs a Debian host") from err
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise AptError(f"{' '.join(argv[:2])} failed: {last}")
    return proc.stdout


class Repository:
    """The download cache: ``debs/`` holds .deb files, ``trees/`` their unpacked contents."""

    def __init__(self, root: Path) -> None:
        self.debs = root / "debs"
        self.trees = root / "trees"
        self.manifest = root / "resolved.json"

    def download(self, names: Iterable[str]) -> list[Package]:
        """Fetch the candidate (newest allowed) version of each package into ``debs/``."""
        names = list(names)
        self.debs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.debs, prefix=".dl-") as tmp:
            try:
                _run(["apt-get", "download", "-q", *names], cwd=Path(tmp))
            except AptError as err:
                if os.geteuid() != 0:
                    raise AptError(f"{err}; run 'apt-get update' and try again") from err
                # Stale package lists name versions the mirror no longer has: refresh once.
                _run(["apt-get", "update", "-qq"])
                _run(["apt-get", "download", "-q", *names], cwd=Path(tmp))
            fetched = []
            for path in sorted(Path(tmp).glob("*.deb")):
                pkg = parse_deb_filename(path.name)
                os.replace(path, self.debs / path.name)
                fetched.append(pkg)
        missing = set(names) - {p.name for p in fetched}
        if missing:
            raise AptError(f"apt-get download did not fetch {', '.join(sorted(missing))}")
        return fetched

    def control(self, pkg: Package, field: str) -> str:
        return _run(["dpkg-deb", "-f", str(self.debs / pkg.filename), field]).strip()

    @staticmethod
    def _tree_name(pkg: Package) -> str:
        return pkg.filename.removesuffix(".deb")

    def tree(self, pkg: Package) -> Path:
        """The unpacked package, unpacked on first use (into a temporary folder, then renamed)."""
        dest = self.trees / self._tree_name(pkg)
        if dest.is_dir():
            return dest
        self.trees.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.trees, prefix=".x-"))
        try:
            _run(["dpkg-deb", "-x", str(self.debs / pkg.filename), str(tmp)])
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if not dest.is_dir():  # else another build unpacked it first
                raise
        return dest

    def trees_of(self, packages: Iterable[Package]) -> dict[str, Path]:
        return {pkg.name: self.tree(pkg) for pkg in packages}

    def cached(self) -> Resolved | None:
        """The remembered resolution, if apt's lists are unchanged and every .deb is present."""
        try:
            data = json.loads(self.manifest.read_text())
        except (OSError, ValueError):
            return None
        if data.get("stamp") != apt_lists_stamp():
            return None
        resolved = Resolved(data["kernel"], tuple(Package(**p) for p in data["packages"]))
        if not all((self.debs / p.filename).is_file() for p in resolved.packages):
            return None
        return resolved

    def remember(self, resolved: Resolved) -> None:
        """Record the resolution and delete the files of packages it no longer uses."""
        data = {
            "stamp": apt_lists_stamp(),
            "kernel": resolved.kernel,
            "packages": [asdict(p) for p in resolved.packages],
        }
        self.manifest.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, self.manifest)
        keep = {p.filename for p in resolved.packages}
        for deb in self.debs.glob("*.deb"):
            if deb.name not in keep:
                deb.unlink()
        keep_trees = {self._tree_name(p) for p in resolved.packages}
        if self.trees.is_dir():
            for tree in self.trees.iterdir():
                if tree.name not in keep_trees:
                    shutil.rmtree(tree, ignore_errors=True)


def agent_libraries(repo: Repository, packages: Iterable[Package]) -> list[libraries.Found]:
    """The guest agent, its dynamic loader and libraries, as files of the given packages."""
    packages = list(packages)
    trees = repo.trees_of(packages)
    agent = libraries.resolve_in_tree(trees[AGENT], AGENT_PROGRAM)
    if agent is None:
        raise NotFoundError(f"package {AGENT} has no {AGENT_PROGRAM}")
    program = libraries.Found(AGENT_PROGRAM, agent, AGENT)
    return [program, *libraries.closure([program], trees)]


def resolve(repo: Repository, refresh: bool = False) -> Resolved:
    """Decide and download the kit's packages: kernel, busybox, the agent and its libraries.

    Libraries come from the Depends of the package whose file needs them, added only when a
    soname is missing, so the set stays as small as the agent's real needs.
    """
    if not refresh:
        cached = repo.cached()
        if cached is not None:
            return cached
    if not any(APT_LISTS.glob("*_Packages*")) and os.geteuid() == 0:
        # A fresh machine has no package lists yet; apt-get download would find nothing.
        _run(["apt-get", "update", "-qq"])
    packages = {p.name: p for p in repo.download([KERNEL_META, AGENT, BUSYBOX])}
    kernel_deps = parse_depends(repo.control(packages[KERNEL_META], "Depends"))
    kernel = next((d for d in kernel_deps if d.startswith("linux-image-")), None)
    if kernel is None:
        raise AptError(f"{KERNEL_META} depends on no linux-image package")
    packages.update((p.name, p) for p in repo.download([kernel]))
    for _ in range(_MAX_EXPANSIONS):
        try:
            agent_libraries(repo, [p for p in packages.values() if p.name != kernel])
            break
        except libraries.MissingLibrary as missing:
            owner = packages[missing.needed_by]
            new = [d for d in parse_depends(repo.control(owner, "Depends")) if d not in packages]
            if not new:
                raise
            packages.update((p.name, p) for p in repo.download(new))
    else:
        raise AptError("the guest agent's libraries were not found in its dependencies")
    resolved = Resolved(kernel, tuple(sorted(packages.values(), key=lambda p: p.name)))
    repo.remember(resolved)
    return resolved
