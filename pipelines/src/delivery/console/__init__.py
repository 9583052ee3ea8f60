"""The delivery console: a read-only web view of the ledger and Prometheus (`deliver console`).

Layout: `data` is the only module that knows the ledger's record format and speaks to Prometheus;
`pages` turns its typed values into page models (pure); `svg` draws charts (pure); `app` is the
Starlette edge; `command` is the CLI glue.
"""
