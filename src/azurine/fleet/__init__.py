"""Regions, data zones and a fleet of model servers: the registry (`servers`, `store`), each server's health
(`health`), the places a request may run (`member`), the choice among them (`router`), one request's routing with
its one retry (`routed`), and the fleet as a replica runs it (`service`, hooked into the deployment stage by
`placement`)."""
