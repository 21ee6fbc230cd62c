"""The docs site works offline: diagrams are pre-rendered SVGs made from their committed sources, and
the built site loads no script, stylesheet, font or image from another host."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_no_mermaid_left_to_a_cdn() -> None:
    for page in DOCS.rglob("*.md"):
        assert "```mermaid" not in page.read_text(encoding="utf-8"), f"{page}: pre-render it (docs/diagrams/)"


@pytest.mark.parametrize("source", sorted((DOCS / "diagrams").glob("*.mmd")), ids=lambda p: p.name)
def test_each_diagram_was_rendered_from_its_source_as_it_is(source: Path) -> None:
    svg = DOCS / "img" / f"{source.stem}.svg"
    assert svg.exists(), f"run scripts/render-diagrams.sh to make {svg.name}"
    digest = hashlib.sha256(source.read_bytes() + (DOCS / "diagrams" / "mermaid-config.json").read_bytes())
    first = svg.read_text(encoding="utf-8").splitlines()[0]
    assert f"(sha256 {digest.hexdigest()})" in first, f"{svg.name} is stale: run scripts/render-diagrams.sh"
    assert any(svg.name in page.read_text(encoding="utf-8") for page in DOCS.rglob("*.md")), "unused"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("the docs extra is not installed")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.timeout(150)
def test_built_site_loads_nothing_from_another_host(site: Path) -> None:
    remote = re.compile(
        r"<(?:script|img|iframe)\b[^>]*\bsrc=\"(?:https?:)?//|<link\b[^>]*\bhref=\"(?:https?:)?//[^\"]*\"[^>]*>"
    )
    found = []
    for page in site.rglob("*.html"):
        for match in remote.finditer(page.read_text(encoding="utf-8")):
            tag = match.group(0)
            if tag.startswith("<link") and re.search(r'rel="(?:canonical|alternate)"', tag):
                continue  # addresses, not resources the page loads
            found.append(f"{page.relative_to(site)}: {tag[:120]}")
    assert not found, "\n".join(found)
    for image in ("img/call-pipeline.svg", "img/breaker-states.svg", "img/demo.png"):
        assert (site / image).exists()


@pytest.mark.timeout(150)
def test_the_client_signature_is_one_parameter_per_line(site: Path) -> None:
    html = (site / "reference" / "client" / "index.html").read_text(encoding="utf-8")
    signature = re.search(r'<div class="doc-signature[^"]*"[^>]*>(.*?)</div>', html, re.S)
    assert signature is not None
    text = re.sub(r"<[^>]+>", "", signature.group(1))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert any(line.startswith("api_key:") for line in lines), lines[:5]
    assert any(line.startswith("deadline:") for line in lines), lines[:5]
    assert max(len(line) for line in lines) <= 100
