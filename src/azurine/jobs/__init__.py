"""Work that runs apart from requests: batch jobs."""
