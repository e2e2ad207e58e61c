"""What is kept about conversations once they happen: `analytics` (conversation records, the
funnel and drop-off), `audit` (who did what through the admin API, contacts as keyed hashes) and
`retention` (the job that deletes what is older than the retention window, under a lease).
"""
