"""Order intake (REST, idempotency keys), order state machine, after-hours queue, FIX 4.2."""
