#!/usr/bin/env python3
"""Regenerate tests/vectors/legacy-hashes.json: password-hash test vectors made by the
reference implementations of each legacy format we import (see docs/legacy-hashes.md).

What it needs (none of it lives in this repository):

* Python 3.10+ with the pinned packages in tools/legacy-hashes/requirements.txt
  (Django 5.2.19, argon2-cffi 25.1.0, argon2-cffi-bindings 26.2.0, bcrypt 5.0.0,
  passlib 1.7.4, PyNaCl 1.6.2), e.g.

      python3 -m venv ~/.cache/latchkey-vectors
      ~/.cache/latchkey-vectors/bin/pip install -r tools/legacy-hashes/requirements.txt

* PHP 8.1+ CLI with the sodium extension, for the Magento and PHP-bcrypt vectors
  (Debian: ``apt-get install -y php-cli``; made with PHP 8.2.36, libsodium 1.0.18).

* Node.js 18+ with the npm package bcrypt@6.0.0 (the library Vendure uses), installed outside
  the repository:

      npm install --prefix ~/.cache/latchkey-vectors/node bcrypt@6.0.0

How to run (from the repository root):

      ~/.cache/latchkey-vectors/bin/python tools/legacy-hashes/make_vectors.py \
          [--node-modules ~/.cache/latchkey-vectors/node/node_modules] [--out tests/vectors/legacy-hashes.json]

Every salt is fixed, so running it again rewrites the same file byte for byte (as long as the
tool versions are the same).  Each vector is verified by the reference verifier that made it
and, where one exists, by a second independent implementation before it is written; any
disagreement aborts the run.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFAULT_OUT = ROOT / "tests" / "vectors" / "legacy-hashes.json"
DEFAULT_NODE_MODULES = Path.home() / ".cache/latchkey-vectors/node/node_modules"

# The shared password set.  All strings are hashed as their UTF-8 bytes.
PASSWORDS = {
    "ascii": "password",
    "unicode": "pässwörd-日本語-비밀번호",
    "empty": "",
    "long": "correct horse battery staple " * 4 + "END",  # 119 bytes
    "delims": "pa:ss$wo rd:0",  # contains the delimiters of the Magento and Django formats
    "bcrypt72": "0123456789abcdef" * 4 + "01234567",  # exactly 72 bytes
}
PASSWORDS["bcrypt80"] = PASSWORDS["bcrypt72"] + "EXTRA-IGNORED-BY-BCRYPT"  # 95 bytes
PASSWORDS["bcrypt_split"] = "a" * 71 + "é"  # 73 bytes; the 72-byte cut splits "é"
PASSWORDS["nul"] = "a\x00b"


def fail(msg: str) -> None:
    sys.stderr.write(f"make_vectors.py: {msg}\n")
    sys.exit(1)


def check(ok: bool, what: str) -> None:
    if not ok:
        fail(f"check failed: {what}")


VECTORS: list[dict] = []


def add(fmt: str, password: str, hash_: str, note: str, *, valid: bool = True,
        default: bool = False, reference: str) -> None:
    VECTORS.append({
        "format": fmt,
        "password": password,
        "hash": hash_,
        "valid": valid,
        "production_default": default,
        "reference": reference,
        "note": note,
    })


# ---------------------------------------------------------------------------------------------
# Independent re-checks of the PHP output (hashlib, PyNaCl, pyca/bcrypt)

def php_intval(s: str) -> int:
    """PHP's (int) cast of a string: leading whitespace, optional sign, leading digits, else 0."""
    m = re.match(r"[ \t\n\r\v\f]*([+-]?\d+)", s)
    return int(m.group(1)) if m else 0


AGNOSTIC = re.compile(r"^3_([0-9]+)_([0-9]+)_([0-9]+)$")  # like PHP, "$" also matches before a final \n


def magento2_verify(password: str, stored: str) -> bool:
    import nacl.bindings as nb
    import nacl.exceptions

    parts = stored.split(":", 2)
    if len(parts) != 3:
        return False
    expected, salt, versions = parts
    salt_b = salt.encode()
    value = password.encode()
    try:
        for v in versions.split(":"):
            m = AGNOSTIC.match(v)
            if m or php_intval(v) == 2:
                outlen, ops, mem = (int(x) for x in m.groups()) if m else (32, 2, 67108864)
                if not salt_b:
                    return False  # str_pad with an empty pad string throws in PHP 8
                s16 = (salt_b * 16)[:16]  # pad by repetition / cut to 16 bytes
                value = nb.crypto_pwhash_alg(outlen, value, s16, ops, mem,
                                             nb.crypto_pwhash_ALG_ARGON2ID13).hex().encode()
            elif php_intval(v) == 0:
                value = hashlib.md5(salt_b + value).hexdigest().encode()
            elif php_intval(v) == 1:
                value = hashlib.sha256(salt_b + value).hexdigest().encode()
            else:
                return False
    except nacl.exceptions.CryptoError:
        return False
    return hmac.compare_digest(value, expected.encode())


def bcrypt_verify_pyca(password: str, stored: str) -> bool | str:
    import bcrypt

    try:
        return bcrypt.checkpw(password.encode(), stored.encode())
    except ValueError as e:
        return f"error: {e}"


def magento1_verify(password: str, stored: str) -> bool:
    if stored.startswith("$2"):
        return bcrypt_verify_pyca(password, stored) is True
    if len(password.encode()) > 256:
        return False
    head, _, salt = stored.partition(":")
    data = (salt + password).encode() if _ else password.encode()
    algo = {32: "md5", 64: "sha256", 128: "sha512"}.get(len(head))
    return bool(algo) and hmac.compare_digest(hashlib.new(algo, data).hexdigest(), head)


# ---------------------------------------------------------------------------------------------
# PHP and node halves

def run_php() -> dict:
    proc = subprocess.run(
        ["php", str(HERE / "make_vectors.php")],
        input=json.dumps({"passwords": PASSWORDS}), capture_output=True, text=True,
    )
    if proc.returncode != 0:
        fail(f"make_vectors.php failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def run_node(node_modules: Path, cases: list[dict], compare: list[dict]) -> dict:
    env = dict(os.environ, NODE_PATH=str(node_modules))
    proc = subprocess.run(
        ["node", str(HERE / "bcrypt_npm.js")],
        input=json.dumps({"cases": cases, "compare": compare}), capture_output=True, text=True,
        env=env,
    )
    if proc.returncode != 0:
        fail(f"bcrypt_npm.js failed (is bcrypt@6.0.0 installed under {node_modules}?):\n{proc.stderr}")
    return json.loads(proc.stdout)


def bcrypt_salt(raw16_hex: str) -> str:
    std = base64.b64encode(bytes.fromhex(raw16_hex)).decode().rstrip("=")
    return std.translate(str.maketrans(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))


# ---------------------------------------------------------------------------------------------

def php_vectors(php: dict, node_modules: Path) -> None:
    # Re-check the npm side can verify what PHP made (it cannot for $2y$: it rejects the prefix).
    cmp_in = [{"password": v["password"], "hash": v["hash"]}
              for v in php["vectors"] if v["format"] == "bcrypt"]
    node = run_node(node_modules, [], cmp_in)
    npm_cmp = iter(node["compare"])
    for v in php["vectors"]:
        pw, h, valid = v["password"], v["hash"], v["valid"]
        if v["format"] == "magento2":
            check(magento2_verify(pw, h) == valid, f"python/PyNaCl re-check of magento2 {h}")
        elif v["format"] == "magento1":
            check(magento1_verify(pw, h) == valid, f"python re-check of magento1 {h}")
        elif v["format"] == "bcrypt":
            got = bcrypt_verify_pyca(pw, h)
            r = next(npm_cmp)
            if len(pw.encode()) > 72:
                check(isinstance(got, str), "pyca bcrypt 5 refuses > 72-byte passwords")
                v["note"] += (" pyca/bcrypt 5.0 refuses to check it (ValueError: password cannot be"
                              " longer than 72 bytes).")
            else:
                check(got == valid, f"pyca/bcrypt re-check of {h}")
            if h.startswith("$2y$"):
                check(r is False or (isinstance(r, str) and r.startswith("error")),
                      "npm bcrypt does not accept $2y$")
                if "same 31-char checksum" in v["note"]:
                    v["note"] += (" npm bcrypt 6 does not accept the $2y$ prefix at all (compare is"
                                  " false); treat $2y$ as $2b$.")
            else:
                check(r == valid, f"npm bcrypt re-check of {h}")
        VECTORS.append(v)


def npm_bcrypt_vectors(node_modules: Path) -> str:
    P = PASSWORDS
    s = [bcrypt_salt(x) for x in ("102132435465768798a9bacbdcedfe0f",
                                  "fedcba98765432100123456789abcdef",
                                  "13579bdf02468ace13579bdf02468ace")]
    cases = [
        (P["ascii"], f"$2b$12${s[0]}", "npm bcrypt (Vendure: BcryptPasswordHashingStrategy, SALT_ROUNDS = 12): $2b$ cost 12.", True),
        (P["unicode"], f"$2b$06${s[1]}", "npm bcrypt $2b$ cost 6, UTF-8 password.", False),
        (P["unicode"], f"$2a$06${s[1]}", "npm bcrypt with a $2a$ salt (genSalt(rounds, 'a')): same checksum as the $2b$ vector above.", False),
        (P["empty"], f"$2b$04${s[2]}", "npm bcrypt $2b$ cost 4, empty password.", False),
        (P["bcrypt80"], f"$2b$05${s[0]}", "npm bcrypt silently truncates to 72 bytes (95-byte password).", False),
        (P["bcrypt72"], f"$2b$05${s[0]}", "The 72-byte prefix of the previous password gives the identical hash.", False),
        (P["nul"], f"$2b$05${s[2]}", "Password with a NUL byte (\"a\\0b\"): npm bcrypt and pyca/bcrypt hash all bytes; PHP crypt() stops at the NUL (hash of \"a\") and password_hash() throws. Hash the full byte string.", False),
        (P["long"], f"$2b$10${s[1]}", "npm bcrypt $2b$ cost 10, 119-byte password (truncated to 72).", False),
    ]
    node = run_node(node_modules, [{"password": p, "salt": salt} for p, salt, _, _ in cases], [])
    hashes = node["hashes"]
    check(hashes[4] == hashes[5], "npm bcrypt truncates at 72 bytes")
    check(hashes[1][7:] == hashes[2][7:], "$2a$ and $2b$ agree in npm bcrypt")
    import bcrypt as pyca
    for (pw, salt, note, default), h in zip(cases, hashes):
        if len(pw.encode()) <= 72:
            check(pyca.hashpw(pw.encode(), salt.encode()).decode() == h, f"pyca/bcrypt agrees with npm on {h}")
        add("bcrypt", pw, h, note, default=default, reference="npm-bcrypt")
    # a wrong-password negative, checked by npm itself
    node = run_node(node_modules, [], [{"password": "Password", "hash": hashes[0]},
                                       {"password": P["ascii"], "hash": hashes[0]}])
    check(node["compare"] == [False, True], "npm compare negative/positive")
    add("bcrypt", "Password", hashes[0], "INVALID: wrong password (npm bcrypt compare is false).",
        valid=False, reference="npm-bcrypt")
    # pyca/bcrypt itself (what Django's bcrypt hashers call)
    h = pyca.hashpw(P["delims"].encode(), f"$2b$08${s[2]}".encode()).decode()
    add("bcrypt", P["delims"], h, "pyca/bcrypt 5.0 hashpw, $2b$ cost 8.", reference="pyca-bcrypt")
    return node["version"]


def django_vectors() -> None:
    import django
    from django.conf import settings

    settings.configure(
        PASSWORD_HASHERS=[
            "django.contrib.auth.hashers.PBKDF2PasswordHasher",
            "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
            "django.contrib.auth.hashers.Argon2PasswordHasher",
            "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
            "django.contrib.auth.hashers.BCryptPasswordHasher",
            "django.contrib.auth.hashers.ScryptPasswordHasher",
        ],
        USE_TZ=True,
    )
    django.setup()
    from django.contrib.auth import hashers as H

    P = PASSWORDS

    def dj(pw: str, encoded: str, note: str, valid: bool = True, default: bool = False) -> None:
        check(H.check_password(pw, encoded) is valid, f"django check_password {encoded}")
        add("django", pw, encoded, note, valid=valid, default=default, reference="django")

    pbkdf2 = H.PBKDF2PasswordHasher()
    check(pbkdf2.iterations == 1_000_000, "Django 5.2 PBKDF2 default is 1,000,000 iterations")
    e = H.make_password(P["ascii"], salt="Xa8sPq3LmN7tVb2WcE9rTy", hasher="pbkdf2_sha256")
    dj(P["ascii"], e, "make_password() with Django 5.2's default: pbkdf2_sha256, 1,000,000 iterations, 32-byte key, standard base64 with padding.", default=True)
    for k, salt in (("ascii", "k3JdL9sQwE2rT5yU8iOp1a"), ("unicode", "Zq7Wm2Nx5Bv8Cl1Kj4Hg6F"),
                    ("empty", "Rt9Yu2Io5Pa8Sd1Fg4Hj7K"), ("delims", "Mn3Bv6Cx9Zl2Kj5Hg8Fd1S")):
        e = pbkdf2.encode(P[k], salt, iterations=1000)
        check(hashlib.pbkdf2_hmac("sha256", P[k].encode(), salt.encode(), 1000).hex()
              == base64.b64decode(e.split("$")[3]).hex(), "hashlib re-check pbkdf2")
        dj(P[k], e, f"PBKDF2PasswordHasher.encode(pw, salt, iterations=1000): salt used as its ASCII bytes ({k}).")
    e = H.PBKDF2SHA1PasswordHasher().encode(P["unicode"], "Lp0Ok9Ij8Uh7Yg6Tf5Rd4E", iterations=1000)
    dj(P["unicode"], e, "pbkdf2_sha1 (PBKDF2SHA1PasswordHasher), 1000 iterations: 20-byte key.")
    dj("Password", H.PBKDF2PasswordHasher().encode(P["ascii"], "k3JdL9sQwE2rT5yU8iOp1a", iterations=1000),
       "INVALID: wrong password.", valid=False)

    # Argon2 (argon2-cffi underneath): "argon2" + the PHC string; salt = the 22-char salt's bytes.
    e = H.make_password(P["unicode"], salt="Qw3Er6Ty9Ui2Op5As8Df1G", hasher="argon2")
    dj(P["unicode"], e, "Argon2PasswordHasher defaults: argon2id v=19, m=102400 KiB, t=2, p=8, 32-byte hash. Strip the leading 'argon2' and it is a standard PHC string.", default=True)

    class CheapArgon2(H.Argon2PasswordHasher):
        time_cost, memory_cost, parallelism = 1, 8192, 1

    class CheapArgon2p2(H.Argon2PasswordHasher):
        time_cost, memory_cost, parallelism = 2, 19456, 2

    dj(P["ascii"], CheapArgon2().encode(P["ascii"], "Hg5Fd2Sa9Lk6Jh3Gf0Ds7A"),
       "Argon2PasswordHasher subclass with time_cost=1, memory_cost=8192, parallelism=1 (how deployments tune it).")
    dj(P["empty"], CheapArgon2p2().encode(P["empty"], "Bn4Mv7Cx0Zq3Wa6Es9Rd2T"),
       "Argon2PasswordHasher subclass t=2, m=19456, p=2, empty password.")

    # bcrypt_sha256: bcrypt over the lowercase hex sha256 of the password (64 ASCII bytes).
    e = H.make_password(P["ascii"], salt=f"$2b$12${bcrypt_salt('0a1b2c3d4e5f60718293a4b5c6d7e8f9')}".encode(),
                        hasher="bcrypt_sha256")
    dj(P["ascii"], e, "BCryptSHA256PasswordHasher default: 'bcrypt_sha256$' + bcrypt($2b$, cost 12) of hex(sha256(password)).", default=True)
    for k, cost, salt in (("unicode", 5, "00ff00ff00ff00ff00ff00ff00ff00ff"),
                          ("bcrypt80", 4, "1234123412341234abcdabcdabcdabcd")):
        e = H.make_password(P[k], salt=f"$2b$0{cost}${bcrypt_salt(salt)}".encode(), hasher="bcrypt_sha256")
        extra = " Long passwords are not truncated: the SHA-256 pre-hash sees all 95 bytes." if k == "bcrypt80" else ""
        dj(P[k], e, f"bcrypt_sha256, cost {cost} ({k}).{extra}")
    dj(P["bcrypt72"], e, "INVALID: bcrypt_sha256 does not share plain bcrypt's truncation; the 72-byte prefix fails.", valid=False)
    e = H.make_password(P["delims"], salt=f"$2b$05${bcrypt_salt('99887766554433221100ffeeddccbbaa')}".encode(), hasher="bcrypt")
    dj(P["delims"], e, "BCryptPasswordHasher (plain): 'bcrypt$' + bcrypt of the raw password. With bcrypt 5.0 installed, Django raises ValueError for passwords over 72 bytes.")

    # scrypt: Django's own layout, not PHC.
    e = H.make_password(P["ascii"], salt="Jk8Lm1Nb4Vc7Xz0Qa3Ws6E", hasher="scrypt")
    dj(P["ascii"], e, "ScryptPasswordHasher default: scrypt$N$salt$r$p$hash with N=16384, r=8, p=5, 64-byte key, standard base64 with padding; salt = the salt string's bytes.", default=True)
    e = H.ScryptPasswordHasher().encode(P["unicode"], "Po9Iu8Yt7Re6Wq5As4Df3G", n=1024, r=8, p=1)
    check(hashlib.scrypt(P["unicode"].encode(), salt=b"Po9Iu8Yt7Re6Wq5As4Df3G", n=1024, r=8, p=1, dklen=64)
          == base64.b64decode(e.split("$")[5]), "hashlib re-check django scrypt")
    dj(P["unicode"], e, "ScryptPasswordHasher.encode(pw, salt, n=1024, r=8, p=1).")


def argon2_vectors() -> None:
    from argon2 import PasswordHasher, Type
    from argon2 import low_level as ll
    from argon2.exceptions import VerifyMismatchError

    ph = PasswordHasher()
    check((ph.time_cost, ph.memory_cost, ph.parallelism, ph.hash_len, ph.salt_len) == (3, 65536, 4, 32, 16),
          "argon2-cffi 25 PasswordHasher defaults (RFC 9106 low-memory profile)")
    P = PASSWORDS

    def a2(pw: str, salt: bytes, t: int, m: int, p: int, n: int, typ, note: str,
           version: int = 19, default: bool = False) -> str:
        h = ll.hash_secret(pw.encode(), salt, time_cost=t, memory_cost=m, parallelism=p,
                           hash_len=n, type=typ, version=version).decode()
        check(ph.verify(h, pw), f"argon2-cffi verify {h}")
        add("argon2", pw, h, note, default=default, reference="argon2-cffi")
        return h

    first = a2(P["ascii"], bytes.fromhex("0102030405060708090a0b0c0d0e0f10"), 3, 65536, 4, 32, Type.ID,
       "argon2-cffi PasswordHasher() defaults (RFC 9106 low-memory): argon2id, m=65536 KiB, t=3, p=4, 16-byte salt, 32-byte hash.", default=True)
    a2(P["unicode"], b"\xfb\xff\xbf" * 5 + b"\x00", 2, 19456, 1, 32, Type.ID,
       "argon2id m=19456,t=2,p=1 (OWASP minimum; also the Rust argon2 crate default). Salt bytes chosen so the B64 has '+' and '/': standard alphabet, no padding.")
    a2(P["ascii"], b"PHPsaltPHPsalt16", 4, 65536, 1, 32, Type.ID,
       "argon2id m=65536,t=4,p=1: PHP password_hash(PASSWORD_ARGON2ID) / Laravel default parameters (made here with argon2-cffi, same libargon2 encoding).", default=True)
    a2(P["empty"], b"saltsalt", 1, 8, 1, 32, Type.ID,
       "argon2id minimum memory m=8 KiB (8*p), t=1, 8-byte salt, empty password.")
    a2(P["long"], b"\x00" * 8, 2, 1024, 2, 16, Type.ID, "argon2id m=1024,t=2,p=2, 16-byte hash, 8 zero-byte salt.")
    a2(P["delims"], bytes(range(32)), 1, 4096, 4, 64, Type.ID, "argon2id m=4096,t=1,p=4, 32-byte salt, 64-byte hash.")
    a2(P["ascii"], b"somesalt-argon2i", 3, 4096, 1, 32, Type.I, "argon2i v=19 m=4096,t=3,p=1.")
    a2(P["unicode"], b"0123456789abcdef", 2, 32768, 1, 32, Type.I, "argon2i v=19 m=32768,t=2,p=1, UTF-8 password.")
    a2(P["empty"], b"\xaa" * 12, 2, 16, 2, 24, Type.I, "argon2i m=16,t=2,p=2, 12-byte salt, 24-byte hash, empty password.")
    h16 = a2(P["ascii"], b"0123456789abcdef", 2, 4096, 1, 32, Type.I,
             "argon2i version 0x10 (v=16): the pre-1.3 algorithm (block overwrite instead of XOR).", version=16)
    a2(P["unicode"], b"fedcba9876543210", 2, 4096, 2, 32, Type.ID, "argon2id v=16.", version=16)
    nov = h16.replace("$v=16$", "$", 1)
    check(ph.verify(nov, P["ascii"]), "libargon2 reads a missing v= as version 0x10")
    add("argon2", P["ascii"], nov, "No v= field (hashes from argon2 < 1.3 encoders): the reference library reads this as version 0x10, so it equals the v=16 vector. The Rust argon2 crate defaults a missing version to 0x13 and would reject it.", reference="argon2-cffi")
    h = first
    try:
        ph.verify(h, "Password")
        fail("argon2 negative verified")
    except VerifyMismatchError:
        pass
    add("argon2", "Password", h, "INVALID: wrong password.", valid=False, reference="argon2-cffi")


def scrypt_vectors() -> None:
    from passlib.hash import scrypt as S

    P = PASSWORDS

    def sc(pw: str, salt: bytes, ln: int, r: int, p: int, note: str, default: bool = False) -> str:
        h = S.using(salt=salt, rounds=ln, block_size=r, parallelism=p).hash(pw)
        check(S.verify(pw, h), f"passlib verify {h}")
        parts = h.split("$")
        pad = lambda x: x + "=" * (-len(x) % 4)  # noqa: E731
        check(base64.b64decode(pad(parts[3])) == salt, "passlib salt is standard base64 of the raw salt")
        check(hashlib.scrypt(pw.encode(), salt=salt, n=1 << ln, r=r, p=p, dklen=32, maxmem=1 << 28)
              == base64.b64decode(pad(parts[4])), "hashlib re-check scrypt")
        add("scrypt", pw, h, note, default=default, reference="passlib")
        return h

    doc = "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E"
    check(S.verify("password", doc), "passlib documentation vector")
    add("scrypt", "password", doc, "passlib's documented example (also the Rust scrypt crate's PHC test vector); ln=16 is passlib's default: N=65536, r=8 -> 64 MiB.", default=True, reference="passlib")
    h = sc(P["ascii"], bytes.fromhex("00112233445566778899aabbccddeeff"), 10, 8, 1, "ln=10 (N=1024), r=8, p=1, 16-byte salt (passlib default salt size).")
    sc(P["unicode"], b"\xfb\xef\xbe\xfb\xff\xff" * 2 + b"\x10\x20\x30\x40", 12, 8, 2,
       "ln=12, r=8, p=2; salt bytes chosen so its B64 shows '+' and '/' (standard alphabet, no padding, not passlib's ab64).")
    sc(P["empty"], b"8bytesal", 11, 4, 1, "ln=11, r=4, p=1, 8-byte salt (11 B64 chars), empty password.")
    sc(P["long"], bytes(range(100, 132)), 14, 8, 1, "ln=14, r=8, p=1, 32-byte salt, 119-byte password.")
    sc(P["delims"], b"\x00" * 16, 15, 8, 1, "ln=15 (N=32768, 32 MiB), r=8, p=1.")
    check(not S.verify("Password", h), "scrypt negative")
    add("scrypt", "Password", h, "INVALID: wrong password.", valid=False, reference="passlib")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--node-modules", type=Path,
                    default=Path(os.environ.get("LEGACY_HASHES_NODE_MODULES", DEFAULT_NODE_MODULES)))
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    php = run_php()
    php_vectors(php, args.node_modules)
    npm_version = npm_bcrypt_vectors(args.node_modules)
    django_vectors()
    argon2_vectors()
    scrypt_vectors()

    node_v = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    pkgs = ", ".join(f"{n} {md.version(n)}" for n in
                     ("Django", "argon2-cffi", "argon2-cffi-bindings", "bcrypt", "passlib", "PyNaCl"))
    doc = {
        "generated_by": (
            f"tools/legacy-hashes/make_vectors.py: PHP {php['php']} (libsodium {php['sodium']}), "
            f"Python {sys.version.split()[0]} ({pkgs}), Node.js {node_v} (npm bcrypt {npm_version})"
        ),
        "fields": {
            "format": "magento2 | magento1 | bcrypt | django | argon2 | scrypt",
            "password": "plaintext; hash its UTF-8 bytes",
            "hash": "the exact stored string",
            "valid": "whether the reference verifier accepts password against hash",
            "production_default": "true when the cost parameters are the source platform's default (slow: up to 100 MiB / 1,000,000 iterations)",
            "reference": "implementation that produced the hash: php (Magento/OpenMage semantics on PHP's own md5/hash/sodium/crypt), npm-bcrypt, pyca-bcrypt, django, argon2-cffi, passlib",
            "note": "what the vector shows",
        },
        "vectors": VECTORS,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    counts: dict[str, int] = {}
    for v in VECTORS:
        counts[v["format"]] = counts.get(v["format"], 0) + 1
    print(f"wrote {len(VECTORS)} vectors to {args.out}: {counts}")


if __name__ == "__main__":
    main()
