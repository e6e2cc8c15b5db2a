"""Helpers shared by the tests: a full snapshot of a space's observable state."""

from __future__ import annotations

from typing import Any

from vmapsim import VmapSpace


def snapshot(space: VmapSpace) -> tuple[Any, ...]:
    """Everything a caller can observe, to prove a failed call changed nothing."""
    return (
        space.areas(),
        space.lazy_areas(),
        space.free_ranges(),
        space.pooled_ranges(),
        space.lazy_pages,
        space.vmap_blocks(),
        space.nr_vmalloc_pages,
        {r.name: (space.pinned(r.name), space.peak_pinned(r.name)) for r in space.layout.regions},
        space.purges,
    )


def console_section(text: str, name: str) -> str:
    """The text between '=== BEGIN name' and '=== END name' in a real-kernel probe's console log."""
    begin = text.index(f"=== BEGIN {name}\n") + len(f"=== BEGIN {name}\n")
    return text[begin : text.index(f"=== END {name}\n", begin)]


def has_sections(text: str, names: tuple[str, ...]) -> bool:
    """Whether a real-kernel probe's console log holds every named section (a guest that died has not)."""
    return all(f"=== END {name}\n" in text for name in names)
