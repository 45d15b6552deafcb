"""The catalog's machine types and TPU topologies as the GKE cluster component's ``HardwareTable``.

The component checks node pools against these facts but knows no catalog: the program passes them in.
"""

from __future__ import annotations

from types import MappingProxyType

from components.gke_cluster import HardwareTable, MachineShape, TopologyShape
from stacks.catalog import CATALOG, Catalog


def gke_hardware(catalog: Catalog = CATALOG) -> HardwareTable:
    machines = {}
    for name, spec in catalog.machine_types.items():
        acc = catalog.accelerators[spec.accelerator]
        machines[name] = MachineShape(spec.accelerator, acc.kind, spec.accelerator_count, acc.gke_accelerator)
    topologies = {name: TopologyShape(t.chips, t.hosts, t.machine_type) for name, t in catalog.tpu_topologies.items()}
    return HardwareTable(MappingProxyType(machines), MappingProxyType(topologies))
