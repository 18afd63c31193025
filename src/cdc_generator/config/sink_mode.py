"""`sinks:` of a service: one sink connector per tenant database, or one for all.

A db-per-tenant service has a source per tenant database. Its sinks are one per
tenant by default; `sinks: one-per-service` runs a single sink that subscribes to
every tenant's topics by `topics.regex` and takes each record's target schema from
its topic (`cdc.<service>.<customer>.<table>` -> `<customer>.<table>`). That schema
is the customer name as written, so the name must already be what the per-tenant
sink would make of it: a lower-case SQL identifier.
"""

from __future__ import annotations

from collections.abc import Iterator

from cdc_generator import names
from cdc_generator.config.model import GroupType, ServerGroup, Service
from cdc_generator.errors import Problem

ONE_PER_TENANT = "one-per-tenant"
ONE_PER_SERVICE = "one-per-service"


def one_sink(service: Service, group: ServerGroup) -> bool:
    """Whether the service's tenant databases share one sink connector."""
    return group.type is GroupType.DB_PER_TENANT and service.sinks == ONE_PER_SERVICE


def problems(service: Service, group: ServerGroup, groups_file: str) -> Iterator[Problem]:
    if group.type is GroupType.DB_SHARED:
        if service.sinks == ONE_PER_TENANT:
            yield service.at("sinks").problem(
                f"{ONE_PER_TENANT} for a service of db-shared group {group.name!r}, "
                "whose tenants share one database, read by one source into one sink",
                "remove sinks: (a db-shared service always has one sink)")
        return
    if not one_sink(service, group):
        return
    for db in group.databases_of(service.name):
        if db.customer is not None and names.sql_ident(db.customer) != db.customer:
            yield db.at("customer").problem(
                f"customer {db.customer!r} of service {service.name!r} (sinks: "
                f"{ONE_PER_SERVICE}) is not a lower-case SQL identifier: the shared sink "
                f"would write schema {db.customer!r}, not {names.sql_ident(db.customer)!r}",
                f"rename the customer to {names.sql_ident(db.customer)!r} in {groups_file}, "
                f"or remove sinks: {ONE_PER_SERVICE} from {service.file}")
