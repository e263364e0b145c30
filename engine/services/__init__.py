"""The use cases: the ONLY thing pages/ and engine/commands/ call (README "Layers").

    ingest     plan a ledger range (one planner), run it or files, background jobs with progress
    analyse    rings -> features -> scores over a store
    models     the signing key, the trust list and the one cache of verified models
    explain    one SHAP path (the Wallet page and the forensic report), drift, the score breakdown
    train      train / evaluate / promote, retrain on drift; retrain: after enough new labels
    label      the annotation queue and recording a signed label
    report     assemble (from the store) -> build (reports/) -> sign -> write; verify
    demo       the demo market end to end; graph_lab: reproducible temporal-graph runs

Below this layer the domain (engine's other packages, models/, reports/) takes frames and
records and returns them; storage/ is the one way into the database.
"""
