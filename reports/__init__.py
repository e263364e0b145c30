"""Forensic reports, rendered from the record they are given: PDF, JSON, Markdown; verification.

`reports.assemble.build_report` turns an `Inputs` record into the canonical content and
its fingerprint; `reports.output` renders and writes it; `reports.verify` checks a file.
Reading the store, explaining the score and signing with the installation's key are the
use case engine.services.report (generate_report, verify_report_file), which the app and
the CLI both call. Nothing in this package reads a store or loads a model.
"""

FORMATS = ("pdf", "json", "markdown")
