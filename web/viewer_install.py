"""Install the OHIF viewer into the data folder: a pinned `@ohif/app` from the npm
registry, checked against its pinned sha512, its `dist/` unpacked, moved from `/` to
`/viewer/`, and configured to read the node's own DICOMweb on the same origin.

OHIF's prebuilt app is built for the root of a site: its HTML and its webpack runtime
name `/` as the public path. We rewrite those few exact strings (and fail loudly if a
new version no longer has them), so the app lives under `/viewer` behind the
dashboard's login and needs no CORS. Nothing of OHIF goes into git.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import tarfile
import tempfile
from importlib import resources
from pathlib import Path

OHIF_PACKAGE = "@ohif/app"
OHIF_VERSION = "3.13.2"
#: The registry's integrity of the pinned tarball: a replaced tarball is refused.
OHIF_INTEGRITY = "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
MOUNT = "/viewer"
#: Parts of dist/ a CT reading never loads: ONNX models for AI segmentation tools
#: (136 MB) and the slide microscopy viewer (20 MB).
SKIPPED = ("ort/", "dicom-microscopy-viewer/")
COMPLETE_MARKER = ".radassist-installed"
_PUBLIC_PATH = '__webpack_require__.p = "/";'
#: OHIF's app-config.js as we write it, beside this module; @MOUNT@ and @VERSION@ filled in.
_APP_CONFIG = "viewer_app_config.js"


class ViewerInstallError(RuntimeError):
    """npm is missing, the registry cannot be reached, or the package is not what we pinned."""


def viewer_dir(data_dir: Path) -> Path:
    """Where the installed viewer lives (one folder per pinned version)."""
    return data_dir / "viewer" / f"ohif-{OHIF_VERSION}"


def is_installed(data_dir: Path) -> bool:
    return (viewer_dir(data_dir) / COMPLETE_MARKER).is_file()


def install_viewer(data_dir: Path, npm: str = "npm", force: bool = False) -> Path:
    """Fetch, check, unpack, rebase and configure OHIF; idempotent. Returns its folder."""
    target = viewer_dir(data_dir)
    if is_installed(data_dir) and not force:
        # A newer radassist may configure the same OHIF differently: keep its config
        # current without fetching the app again.
        _configure(target)
        return target
    npm_path = shutil.which(npm)
    if npm_path is None:
        raise ViewerInstallError(
            "npm is not installed: install Node.js and npm (Debian: apt-get install nodejs npm)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".install-") as work:
        work_dir = Path(work)
        tarball = _fetch(npm_path, work_dir)
        _check_integrity(tarball)
        staged = work_dir / "dist"
        _unpack_dist(tarball, staged)
        tarball.unlink()
        rebase(staged)
        _configure(staged)
        (staged / COMPLETE_MARKER).write_text(f"{OHIF_PACKAGE}@{OHIF_VERSION}\n")
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return target


def _configure(folder: Path) -> None:
    """Write OHIF's app-config.js into `folder` unless it already holds app_config()."""
    config, wanted = folder / "app-config.js", app_config()
    if not config.is_file() or config.read_text(encoding="utf-8") != wanted:
        config.write_text(wanted, encoding="utf-8")


def _fetch(npm: str, work_dir: Path) -> Path:
    spec = f"{OHIF_PACKAGE}@{OHIF_VERSION}"
    completed = subprocess.run(
        [npm, "pack", spec, "--pack-destination", str(work_dir), "--prefer-offline", "--silent"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    tarballs = list(work_dir.glob("*.tgz"))
    if completed.returncode != 0 or len(tarballs) != 1:
        raise ViewerInstallError(f"npm pack {spec} failed: {completed.stderr.strip()[-500:]}")
    return tarballs[0]


def _check_integrity(tarball: Path) -> None:
    digest = hashlib.sha512()
    with tarball.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    found = "sha512-" + base64.b64encode(digest.digest()).decode()
    if found != OHIF_INTEGRITY:
        raise ViewerInstallError(
            f"{tarball.name} is not the pinned {OHIF_PACKAGE}@{OHIF_VERSION}: {found}"
        )


def _unpack_dist(tarball: Path, destination: Path) -> None:
    prefix = "package/dist/"
    with tarfile.open(tarball, "r:gz") as archive:
        members = []
        for member in archive.getmembers():
            if not member.name.startswith(prefix) or not (member.isfile() or member.isdir()):
                continue
            relative = member.name[len(prefix) :]
            if not relative or relative.startswith(SKIPPED):
                continue
            member.name = relative
            members.append(member)
        destination.mkdir(parents=True)
        archive.extractall(destination, members=members, filter="data")


def rebase(dist: Path, mount: str = MOUNT) -> None:
    """Move a root-built OHIF to `mount`: the page's links, its inline scripts (moved to
    a file, so the page needs no 'unsafe-inline'), and each webpack runtime's public path."""
    base = mount.rstrip("/") + "/"
    index = dist / "index.html"
    html = index.read_text(encoding="utf-8")
    html, links = re.subn(r'(href|src)="/(?!/)', rf'\1="{base}', html)
    inline = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    if not links or len(inline) != 2 or "PUBLIC_URL" not in "".join(inline):
        raise ViewerInstallError("OHIF's index.html is not laid out as this installer expects")
    html = re.sub(r"<script>.*?</script>", "", html, flags=re.S)
    # The service worker would cache the app outside our login; OHIF runs without it.
    html = re.sub(r'<script[^>]*init-service-worker\.js"></script>', "", html)
    html = html.replace(
        f'<script rel="preload" as="script" src="{base}app-config.js"></script>',
        f'<script src="{base}radassist-init.js"></script>'
        f'<script rel="preload" as="script" src="{base}app-config.js"></script>',
    )
    index.write_text(html, encoding="utf-8")
    (dist / "radassist-init.js").write_text(
        f'window.PUBLIC_URL = "{base}";\n'
        "function browserImportFunction(n) { return import(n); }\n",
        encoding="utf-8",
    )
    for sheet in dist.glob("*.css"):  # fonts and images named from the root
        text = sheet.read_text(encoding="utf-8")
        sheet.write_text(re.sub(r"url\(/(?!/)", f"url({base}", text), encoding="utf-8")
    rebased = 0
    for script in dist.glob("*.js"):
        text = script.read_text(encoding="utf-8", errors="surrogateescape")
        if _PUBLIC_PATH in text:
            script.write_text(
                text.replace(_PUBLIC_PATH, f'__webpack_require__.p = "{base}";'),
                encoding="utf-8",
                errors="surrogateescape",
            )
            rebased += 1
    if not rebased:
        raise ViewerInstallError("no webpack public path found to move under " + mount)


def app_config(mount: str = MOUNT) -> str:
    """OHIF's configuration (web/viewer_app_config.js): the node's DICOMweb on the same
    origin; OHIF's default modes (the longitudinal viewer with the DICOM SR and
    measurement-tracking extensions) without the guided tour; our SR's units shown as a
    reader writes them; a handler that shows our Key Object Selection as the key images
    it selects (OHIF 3.13 has none); and a redraw of each new viewport's annotations,
    without which OHIF 3.13 often opens an SR with its outline missing."""
    template = resources.files("web").joinpath(_APP_CONFIG).read_text(encoding="utf-8")
    return template.replace("@VERSION@", OHIF_VERSION).replace("@MOUNT@", mount)
