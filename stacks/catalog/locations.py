"""Regions and zones, and what each platform and accelerator offers there (data/locations.yaml)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Optional

import yaml

from stacks.catalog import DATA_DIR, CatalogError


@dataclass(frozen=True)
class Region:
    name: str
    zones: tuple[str, ...]  # full zone names, e.g. us-central1-a
    vertex: bool  # Vertex AI serves in this region
    cloudrun_gpus: tuple[str, ...]  # Cloud Run GPU types offered here
    vertex_gpus: Optional[tuple[str, ...]]  # Vertex AI inference accelerators; None = not recorded


@dataclass(frozen=True)
class Locations:
    regions: Mapping[str, Region]
    tpu_zones: Mapping[str, tuple[str, ...]]  # accelerator key -> zones offering it
    sources: Mapping[str, str]

    def zone(self, name: str) -> Optional[Region]:
        """The region a zone belongs to, or None when the zone is unknown."""
        region = self.regions.get(name.rpartition("-")[0])
        return region if region is not None and name in region.zones else None

    def all_zones(self) -> list[str]:
        return [z for r in self.regions.values() for z in r.zones]

    def tpu_zones_in(self, accelerator: str, region: Optional[str] = None) -> list[str]:
        zones = list(self.tpu_zones.get(accelerator, ()))
        return [z for z in zones if region is None or z.rpartition("-")[0] == region]

    def cloudrun_regions(self, gpu: str) -> list[str]:
        return [r.name for r in self.regions.values() if gpu in r.cloudrun_gpus]

    def vertex_regions(self, accelerator: Optional[str] = None) -> list[str]:
        return [r.name for r in self.regions.values()
                if r.vertex and (accelerator is None or (r.vertex_gpus is not None and accelerator in r.vertex_gpus))]


@functools.cache
def locations() -> Locations:
    path = DATA_DIR / "locations.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        regions = {
            name: Region(
                name=name,
                zones=tuple(f"{name}-{letter}" for letter in spec["zones"]),
                vertex=bool(spec.get("vertex", False)),
                cloudrun_gpus=tuple(spec.get("cloudrun_gpus", ())),
                vertex_gpus=tuple(spec["vertex_gpus"]) if "vertex_gpus" in spec else None,
            )
            for name, spec in data["regions"].items()
        }
        tpu_zones = {key: tuple(zones) for key, zones in data["tpu_zones"].items()}
        sources = dict(data["sources"])
    except (KeyError, TypeError) as error:
        raise CatalogError(f"locations.yaml: malformed ({error!r}); see the file's header") from error
    for key, zones in tpu_zones.items():
        unknown = [z for z in zones if z.rpartition("-")[0] not in regions or z not in regions[z.rpartition("-")[0]].zones]
        if unknown:
            raise CatalogError(f"locations.yaml: tpu_zones.{key} names zones missing from regions: {unknown}")
    return Locations(MappingProxyType(regions), MappingProxyType(tpu_zones), MappingProxyType(sources))
