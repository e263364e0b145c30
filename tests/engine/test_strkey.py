from __future__ import annotations

import hashlib
import random

import numpy as np
from stellar_sdk import StrKey

from engine.strkey import valid_account_ids


def test_vectorised_check_agrees_with_stellar_sdk_on_valid_and_corrupted_keys():
    keys = [StrKey.encode_ed25519_public_key(hashlib.sha256(str(i).encode()).digest()) for i in range(3000)]
    rnd = random.Random(1)
    corrupted = []
    for k in keys[:1000]:
        i = rnd.randrange(56)
        corrupted.append(k[:i] + rnd.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") + k[i + 1 :])
    odd = ["", "G" * 56, "M" + keys[0][1:], keys[0][:-1], keys[0].lower(), "SA" + keys[0][2:], "GÄ" + keys[0][2:]]
    secret = StrKey.encode_ed25519_secret_seed(bytes(32))
    values = keys + corrupted + odd + [secret]
    expected = np.array([StrKey.is_valid_ed25519_public_key(v) for v in values])
    assert (valid_account_ids(values) == expected).all()
    assert expected[:3000].all() and not expected[3000 + 1000 :].any()
    assert (~expected[3000:4000]).sum() > 950  # nearly every one-character change breaks the checksum


def test_encoding_matches_stellar_sdk_and_validates():
    from engine.strkey import encode_account_ids

    raw = np.random.default_rng(3).integers(0, 256, size=(500, 32), dtype=np.uint8)
    ours = encode_account_ids(raw).tolist()
    assert ours == [StrKey.encode_ed25519_public_key(bytes(r)) for r in raw]
    assert valid_account_ids(ours).all()


def test_account_reason_names_the_first_bad_column_and_remembers_only_valid_ids():
    import polars as pl

    from engine.ingest.validate import CheckedAccounts, account_reason

    good = [StrKey.encode_ed25519_public_key(hashlib.sha256(str(i).encode()).digest()) for i in range(3)]
    bad = good[0][:-1] + ("A" if good[0][-1] != "A" else "B")
    frame = pl.DataFrame({"seller": [good[0], good[1], bad, None], "buyer": [good[2], bad, good[1], None]})
    checked = CheckedAccounts()
    for _ in range(2):  # the second chunk finds the good ids remembered, the bad one still bad
        reasons = account_reason(frame, "seller", "buyer", required=False, checked=checked).to_list()
        assert reasons[0] is None and reasons[3] is None
        assert reasons[1].startswith("field buyer:") and bad in reasons[1]
        assert reasons[2].startswith("field seller:") and bad in reasons[2]
        assert sorted(checked.ids.to_list()) == sorted(good)
    required = account_reason(frame, "seller", required=True).to_list()
    assert required[3] == "missing field seller"
