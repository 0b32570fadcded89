"""Rollout: which version of each model the workers serve and which shadows it, changed live.

`plan` holds the rule (pinned, else promoted, else latest; the admin route's shadow, else `CLF_SHADOW`'s),
`promotion` applies it (the admin routes, the follower thread, a registry's start) and tells the registry through
its `Registry` protocol, `admin` checks and records the admin actions, `shadow` scores the shadows' rows. Its store,
`rollout_store` (model versions, what is served and shadowed, admin actions, shadows' decisions), and the cache of
model versions, `versions`, sit below the prediction log, whose writer thread fills them.
"""
