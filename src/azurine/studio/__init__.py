"""Azurine Studio, the web portal: its built bundle and how `azurine serve` serves it at `/studio`."""
