"""The management plane: Azure Resource Manager's `Microsoft.CognitiveServices` API."""
