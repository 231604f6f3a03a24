"""Double-entry bookkeeping on PostgreSQL: accounts, journal, holds, T+1 settlement."""
