"""Audio in and out: decoding uploads for speech to text, encoding synthesized speech (PyAV, that is FFmpeg)."""
