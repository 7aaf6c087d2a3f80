"""Local content-filter detectors: profanity, PII, protected material and custom blocklists, all offline on CPU."""
