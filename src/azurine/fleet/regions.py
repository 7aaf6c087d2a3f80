"""Azure's regions, their data zones, and where each deployment type lets a request run.

A deployment type is Azure's promise about where data is processed: `Standard` and `ProvisionedManaged` in the
account's own region, the `DataZone*` types within the data zone that holds it (US or EU), the `Global*` types (and
`DeveloperTier`) anywhere. A region outside both zones is its own only zone: a DataZone deployment of an account
there runs in that region alone.
"""

from __future__ import annotations

REGION_SKUS = frozenset({"Standard", "ProvisionedManaged"})
DATA_ZONE_SKUS = frozenset({"DataZoneStandard", "DataZoneProvisionedManaged", "DataZoneBatch"})
DATA_ZONES = ("US", "EU")

# name → (display name, data zone or ""); Azure's names, as `az account list-locations` gives them
REGIONS: dict[str, tuple[str, str]] = {
    "eastus": ("East US", "US"), "eastus2": ("East US 2", "US"), "centralus": ("Central US", "US"),
    "northcentralus": ("North Central US", "US"), "southcentralus": ("South Central US", "US"),
    "westcentralus": ("West Central US", "US"), "westus": ("West US", "US"), "westus2": ("West US 2", "US"),
    "westus3": ("West US 3", "US"),
    "westeurope": ("West Europe", "EU"), "northeurope": ("North Europe", "EU"),
    "francecentral": ("France Central", "EU"), "francesouth": ("France South", "EU"),
    "germanywestcentral": ("Germany West Central", "EU"), "germanynorth": ("Germany North", "EU"),
    "swedencentral": ("Sweden Central", "EU"), "italynorth": ("Italy North", "EU"),
    "polandcentral": ("Poland Central", "EU"), "spaincentral": ("Spain Central", "EU"),
    "austriaeast": ("Austria East", "EU"), "belgiumcentral": ("Belgium Central", "EU"),
    "denmarkeast": ("Denmark East", "EU"),
    "uksouth": ("UK South", ""), "ukwest": ("UK West", ""), "switzerlandnorth": ("Switzerland North", ""),
    "switzerlandwest": ("Switzerland West", ""), "norwayeast": ("Norway East", ""),
    "canadaeast": ("Canada East", ""), "canadacentral": ("Canada Central", ""),
    "brazilsouth": ("Brazil South", ""), "japaneast": ("Japan East", ""), "japanwest": ("Japan West", ""),
    "koreacentral": ("Korea Central", ""), "australiaeast": ("Australia East", ""),
    "southeastasia": ("Southeast Asia", ""), "eastasia": ("East Asia", ""), "centralindia": ("Central India", ""),
    "southindia": ("South India", ""), "uaenorth": ("UAE North", ""), "southafricanorth": ("South Africa North", ""),
    "qatarcentral": ("Qatar Central", ""), "israelcentral": ("Israel Central", ""),
    "mexicocentral": ("Mexico Central", ""), "newzealandnorth": ("New Zealand North", ""),
}


def known(region: str) -> bool:
    return region.lower() in REGIONS


def zone_of(region: str) -> str:
    """The data zone holding `region`, or "" where none does (or the region is not Azure's)."""
    return REGIONS.get(region.lower(), ("", ""))[1]


def display_name(region: str) -> str:
    return REGIONS.get(region.lower(), (region, ""))[0]


def allows(sku: str, account_location: str, region: str) -> bool:
    """Whether a deployment of type `sku`, in an account at `account_location`, may run a request in `region`."""
    here, there = account_location.lower(), region.lower()
    if here == there:
        return True
    if sku in REGION_SKUS:
        return False
    if sku in DATA_ZONE_SKUS:
        zone = zone_of(here)
        return bool(zone) and zone_of(there) == zone
    return True  # Global*, DeveloperTier


def residency(sku: str) -> int:
    """How wide a deployment type lets a request go: 0 the account's region, 1 its data zone, 2 anywhere."""
    if sku in REGION_SKUS:
        return 0
    if sku in DATA_ZONE_SKUS:
        return 1
    return 2
