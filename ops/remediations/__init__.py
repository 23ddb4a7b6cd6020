"""Operators' remediations that cross domains (the rest are the domains' own services).

Each is one function over the domains' services, in one transaction, writing one audit row
(`chatsite.accounts.services.audit_record`) in that transaction; `manage.py` commands
(ops/management/commands) and the admin (ops/remediations/admin.py, ops/remediations/views.py)
are adapters over them. Each has a read-only `*_plan` twin that says what it would change: the
commands' `--dry-run` and the admin's confirmation pages print it.

- bans.py: ban an abuser (disable, revoke sessions, close sockets, optionally every group)
- orphans.py: clear orphaned rows of one or every kind (group_delivery, repaired where it can
  be; status_audience, status_views, dm_delivery), exactly the planned ids
- rate_limits.py: reset one user's rate-limit windows, flush them all (`rl:*` only)

Single-domain remediations live in their domain: groups.services.remediations (promote an owner,
dedupe participants, ban from every group), dm.services.devices.device_revoke.
"""
