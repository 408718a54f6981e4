"""The composer: one run from config to records (plan, preflight refusals, schedule, runner, out-of-memory skips, processes)."""
