"""Capacity types per accelerator on GKE: where each exists and the GKE version it needs (data/capacity.yaml)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Optional

import yaml

from stacks.catalog import DATA_DIR, CatalogError
from stacks.catalog.locations import locations

# The order a ComputeClass tries them in when a stack lists several: capacity already paid for, then
# capacity that is never taken back, then capacity that waits for room, then capacity that may vanish.
CAPACITY_TYPES = ("reservation", "on-demand", "flex-start", "spot")


@dataclass(frozen=True)
class CapacityOffer:
    """One capacity type for one accelerator."""

    zones: Optional[tuple[str, ...]]  # None: not recorded, the zone is not checked
    min_gke: Optional[str]  # first GKE version that provisions it; None: whatever the accelerator needs
    note: str = ""


@dataclass(frozen=True)
class CapacityTable:
    as_of: str
    compute_class_min_gke: str
    auto_creation_min_gke: str
    offers: Mapping[str, Mapping[str, CapacityOffer]]  # accelerator key -> capacity type -> offer
    sources: Mapping[str, tuple[str, ...]]  # accelerator key (or "compute_class") -> sources

    def offer(self, accelerator: str, capacity: str) -> Optional[CapacityOffer]:
        return self.offers.get(accelerator, {}).get(capacity)


@functools.cache
def capacity_table() -> CapacityTable:
    path = DATA_DIR / "capacity.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        cc = data["compute_class"]
        declared = tuple(data["capacity_types"])
        if set(declared) != set(CAPACITY_TYPES):
            raise CatalogError(f"capacity.yaml: capacity_types must be exactly {', '.join(CAPACITY_TYPES)}")
        offers: dict[str, Mapping[str, CapacityOffer]] = {}
        sources: dict[str, tuple[str, ...]] = {"compute_class": tuple(cc["sources"])}
        for accelerator, rows in data["accelerators"].items():
            table: dict[str, CapacityOffer] = {}
            for capacity in CAPACITY_TYPES:
                row = rows[capacity]
                zones = row["zones"]
                if zones == "accelerator_zones":
                    zones = locations().tpu_zones.get(accelerator)
                    if zones is None:
                        raise CatalogError(f"capacity.yaml: accelerators.{accelerator}.{capacity}.zones is "
                                           f"accelerator_zones, but locations.yaml has no tpu_zones.{accelerator}")
                table[capacity] = CapacityOffer(
                    zones=None if zones is None else tuple(zones),
                    min_gke=None if row.get("min_gke") is None else str(row["min_gke"]),
                    note=str(row.get("note", "")),
                )
            offers[accelerator] = MappingProxyType(table)
            sources[accelerator] = tuple(rows["sources"])
        return CapacityTable(as_of=str(data["as_of"]), compute_class_min_gke=str(cc["min_gke"]),
                             auto_creation_min_gke=str(cc["auto_creation_min_gke"]),
                             offers=MappingProxyType(offers), sources=MappingProxyType(sources))
    except (KeyError, TypeError) as error:
        raise CatalogError(f"capacity.yaml: malformed ({error!r}); see the file's header") from error


@dataclass(frozen=True)
class CapacityPrice:
    machine_type: str
    capacity: str  # spot | flex-start
    usd_per_hour: float
    note: str


@dataclass(frozen=True)
class CapacityPrices:
    as_of: str
    prices: Mapping[tuple[str, str], CapacityPrice]  # (machine type, capacity) -> price
    sources: tuple[str, ...]

    def price(self, machine_type: str, capacity: str) -> Optional[CapacityPrice]:
        return self.prices.get((machine_type, capacity))


@functools.cache
def capacity_prices() -> CapacityPrices:
    """Spot and Flex-start prices of GKE machine types (data/prices.yaml, `capacity_prices`)."""
    data = yaml.safe_load((DATA_DIR / "prices.yaml").read_text(encoding="utf-8"))
    try:
        prices: dict[tuple[str, str], CapacityPrice] = {}
        for machine_type, rows in data["capacity_prices"].items():
            for capacity, row in rows.items():
                if capacity not in ("spot", "flex-start"):
                    raise CatalogError(f"prices.yaml: capacity_prices.{machine_type}.{capacity}: use spot or flex-start")
                prices[(machine_type, capacity)] = CapacityPrice(machine_type, capacity, float(row["usd_per_hour"]),
                                                                 str(row.get("note", "")))
        sources = tuple(data["capacity_price_sources"])
        if not sources:
            raise CatalogError("prices.yaml: capacity_price_sources is required")
        return CapacityPrices(as_of=str(data["capacity_prices_as_of"]), prices=MappingProxyType(prices), sources=sources)
    except (KeyError, TypeError, ValueError) as error:
        raise CatalogError(f"prices.yaml: capacity_prices malformed ({error!r})") from error
