"""Interactive apps: the browser demo (:mod:`.demo`), the A/B user study (:mod:`.study`) and the
HTTP server guards both use (:mod:`.httpguard`)."""
