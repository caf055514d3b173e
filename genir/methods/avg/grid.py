"""A picture of text-to-image answers: one row per query, its text on the left and its top-k images with their
titles and scores (a green frame on a relevant image when the relevance is known)."""

from __future__ import annotations

import textwrap
from pathlib import Path


def save_grid(rows: list[tuple[str, list[tuple[object, str, float, bool | None]]]], path: str | Path,
              title: str = "") -> Path:
    """``rows``: per query (query text, [(PIL image, title, score, relevant or None), ...]). Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = max((len(found) for _, found in rows), default=1)
    fig, axes = plt.subplots(len(rows), k + 1, figsize=(1.9 * (k + 1), 2.4 * len(rows) + 0.4), squeeze=False)
    for r, (query, found) in enumerate(rows):
        ax = axes[r][0]
        ax.axis("off")
        ax.text(0.0, 0.5, "\n".join(textwrap.wrap(query, 22)[:7]), fontsize=8, va="center", ha="left",
                transform=ax.transAxes)
        for c in range(k):
            ax = axes[r][c + 1]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(found):
                ax.axis("off")
                continue
            image, name, score, relevant = found[c]
            ax.imshow(image)
            ax.set_title("\n".join(textwrap.wrap(f"{c + 1}. {name}", 20)[:2]) + f"\n{score:.2f}", fontsize=6)
            color = {True: "tab:green", False: "lightgray", None: "lightgray"}[relevant]
            for spine in ax.spines.values():
                spine.set_color(color)
                spine.set_linewidth(3 if relevant else 1)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
