"""Draw the package's layer diagram from the code: docs/images/architecture.png.

Each layer of :data:`uivlm_helpers.LAYERS` is one band, lowest at the bottom, listing its sub-packages and
their modules as they are on disk; an arrow between two bands is drawn for every pair of layers where a
module of the upper one imports a module of the lower one (read from the source with ``ast``, so the
picture cannot drift from the code).

    .venv/bin/python docs/architecture.py            # rewrites docs/images/architecture.png
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "uivlm_helpers"
OUT = ROOT / "docs" / "images" / "architecture.png"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imported_modules(path: Path) -> set[str]:
    """Package modules a file imports (relative imports resolved), at any depth of the file."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("uivlm_helpers"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("uivlm_helpers"))
    return found


def summary(sub: str) -> str:
    """The first line of a sub-package's docstring: what the layer is for."""
    tree = ast.parse((PACKAGE / sub / "__init__.py").read_text())
    first = (ast.get_docstring(tree) or "").split("\n\n")[0].replace("\n", " ")
    return first.split(": ", 1)[-1].split(". ")[0].split(" (")[0].replace("``", "").rstrip(".,")


def layer_of(sub: str | None, layers) -> int | None:
    for index, layer in enumerate(layers):
        if sub in (layer if isinstance(layer, tuple) else (layer,)):
            return index
    return None


def layer_graph(layers) -> tuple[dict, set]:
    """``{layer index: {sub-package: [modules]}}`` and the set of (upper, lower) layer pairs that import."""
    contents: dict[int, dict[str, list[str]]] = {i: {} for i in range(len(layers))}
    edges = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        sub = subpackage(module)
        index = layer_of(sub, layers)
        if index is None:
            continue
        short = module.split(".", 2)[2] if module.count(".") >= 2 else "(package)"
        contents[index].setdefault(sub, []).append(short)
        for target in imported_modules(path):
            lower = layer_of(subpackage(target), layers)
            if lower is not None and lower != index:
                edges.add((index, lower))
    return contents, edges


def draw(out: Path = OUT) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sys.path.insert(0, str(ROOT))
    from uivlm_helpers import LAYERS

    contents, edges = layer_graph(LAYERS)
    height, pitch, left = 1.0, 1.3, 1.6
    fig, ax = plt.subplots(figsize=(12, pitch * len(LAYERS) + 0.6))
    for index, layer in enumerate(LAYERS):
        y = index * pitch
        names = layer if isinstance(layer, tuple) else (layer,)
        width = 8.6 / len(names)
        for column, sub in enumerate(names):
            x = left + column * width
            ax.add_patch(plt.Rectangle((x, y), width - 0.15, height, facecolor="#e8eef7", edgecolor="#34507a"))
            modules = ", ".join(m for m in sorted(contents[index].get(sub, [])) if m != "(package)")
            ax.text(x + 0.12, y + height - 0.12, f"{sub}/", fontsize=11, fontweight="bold", va="top")
            ax.text(x + 1.45, y + height - 0.14, _wrap(summary(sub), int(width * 11) - 16), fontsize=8.5,
                    va="top", style="italic", color="#2c3e57")
            ax.text(x + 0.12, y + height - 0.55, _wrap(modules, int(width * 14)), fontsize=7, va="top",
                    family="monospace", color="#333333")
    # One column of arrows per importing layer: from its band down to each layer it imports.
    for upper in sorted({u for u, _ in edges}):
        x = 0.15 + 0.16 * upper
        targets = sorted(lower for u, lower in edges if u == upper)
        ax.plot([x, x], [upper * pitch + height / 2, targets[0] * pitch + height / 2], color="#7a8aa0", lw=0.8)
        ax.plot([x, left], [upper * pitch + height / 2] * 2, color="#7a8aa0", lw=0.8)
        for lower in targets:
            ax.annotate("", xy=(left, lower * pitch + height / 2 - 0.04 * upper),
                        xytext=(x, lower * pitch + height / 2 - 0.04 * upper),
                        arrowprops={"arrowstyle": "->", "color": "#7a8aa0", "lw": 0.8})
    ax.set_xlim(0, 10.2)
    ax.set_ylim(-0.2, len(LAYERS) * 1.25)
    ax.axis("off")
    ax.set_title("uivlm_helpers: layers, bottom first; arrows: which layers each one imports (never upward)",
                 fontsize=12)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def _wrap(text: str, width: int) -> str:
    lines, line = [], ""
    for word in text.split(", "):
        candidate = f"{line}, {word}" if line else word
        if len(candidate) > width and line:
            lines.append(line + ",")
            line = word
        else:
            line = candidate
    return "\n".join(lines + [line])


if __name__ == "__main__":
    print(draw())
