"""The admin for mall staff: tenants and tiers to edit, members to look after, the ledger to read.

Nothing here moves points or touches keys by itself: actions and forms call the
services in members.ledger, members.services and members.auth and show the error
code a service answers with. The tables that grow with visits (members, accounts,
transactions, entries, lots, visits) are listed without a full COUNT(*), without
facet counts, sorted only on indexed columns, and searched by whole values that
each hit an index: the admin's default icontains search would scan them.
"""

from members.admin import ledger, members, pushes, segments, staff, tenants  # noqa: F401  (registers the pages)
