"""Nightly reruns: one small signed run per night, kept in a history DB, judged against a verified baseline.

A cron job reads only the exit code and one line on stdout, so both must be trustworthy:

- 0 within tolerance (or no baseline chosen yet), 1 drift, 2 anything that prevented a valid comparison (disk, DB,
  lock, spec, baseline missing or altered, Ollama, meter, a machine too busy to measure). Every night, whatever
  its code, is recorded in the history DB with its reason and the machine's conditions.
- The baseline is verified (signature against the signer pinned when it was chosen, checksums) when it is chosen
  and before every comparison, so an altered baseline is exit 2, never a drift.
- The drift rule (`drift`) knows how much an unchanged system varies from night to night: it learns that spread
  from accepted nights and widens the within-night interval by it.

Modules: `night` (one night, start to end), `history` (the DB), `baseline`, `drift`, `machine` (the machine's
conditions and the busy verdict), `failures` (one-line reasons), `trend` (the plot), `outcome` (exit codes).
"""
