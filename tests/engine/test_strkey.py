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
