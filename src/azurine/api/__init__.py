"""HTTP: routes, request and response models, Azure's error bodies and headers."""
