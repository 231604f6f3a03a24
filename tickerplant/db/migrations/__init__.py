"""Versioned SQL migrations, shipped as package data: ``NNNN_<name>.sql``, applied in order.

Add a change as the next number; never edit a file once it is merged (its checksum is recorded
where it was applied, and ``migrate`` refuses to run against an edited file).
"""
