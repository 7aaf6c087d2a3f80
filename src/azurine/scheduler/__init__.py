"""One scheduler above every engine: the compute threads' queues (`compute`), the upstream servers' gates
(`upstream`), the work order (`work`) and the one place its usage is counted (`metering`)."""
