"""The api-versions ARM accepts, per resource provider, as Azure publishes them.

Each set is the list of versions in Azure/azure-rest-api-specs, `specification/<service>/resource-manager/…/{stable,
preview}/`: a client may send any of them, and one that is not there is refused with InvalidApiVersionParameter,
as ARM refuses it. Azurine answers every version with the same shapes; a version that changed a shape Azurine
serves would be handled where that shape is made.
"""

from __future__ import annotations

# specification/cognitiveservices/resource-manager/Microsoft.CognitiveServices/{stable,preview}/
COGNITIVE_SERVICES = frozenset({
    # stable
    "2017-04-18", "2021-04-30", "2021-10-01", "2022-03-01", "2022-10-01", "2022-12-01", "2023-05-01", "2024-10-01",
    "2025-06-01", "2025-09-01", "2025-12-01", "2026-03-01", "2026-05-01", "2026-07-01", "2026-09-01",
    # preview (the folder of 2020-03-01 holds a preview without the suffix)
    "2016-02-01-preview", "2020-03-01", "2023-06-01-preview", "2023-10-01-preview", "2024-04-01-preview",
    "2024-06-01-preview", "2025-04-01-preview", "2025-07-01-preview", "2025-10-01-preview", "2026-01-15-preview",
    "2026-03-15-preview", "2026-05-15-preview", "2026-07-15-preview", "2026-09-15-preview",
})

# specification/resources/resource-manager/Microsoft.Resources/resources/stable/: resource groups and providers
RESOURCES = frozenset({
    "2015-11-01", "2016-02-01", "2016-07-01", "2016-09-01", "2017-05-10", "2018-02-01", "2018-05-01", "2019-03-01",
    "2019-05-01", "2019-05-10", "2019-07-01", "2019-08-01", "2019-10-01", "2020-06-01", "2020-08-01", "2020-10-01",
    "2021-01-01", "2021-04-01", "2022-09-01", "2023-07-01", "2024-03-01", "2024-07-01", "2024-11-01", "2025-03-01",
    "2025-04-01",
})

# specification/resources/resource-manager/Microsoft.Resources/subscriptions/stable/: subscriptions and tenants
SUBSCRIPTIONS = frozenset({
    "2015-11-01", "2016-06-01", "2018-06-01", "2019-06-01", "2019-11-01", "2020-01-01", "2021-01-01", "2022-12-01",
})

# specification/cost-management/resource-manager/Microsoft.CostManagement/stable/: the versions whose Query API
# (`{scope}/providers/Microsoft.CostManagement/query`) Azurine serves; its shape is the same in each
COST_MANAGEMENT = frozenset({"2023-03-01", "2023-11-01", "2024-08-01", "2025-03-01"})
