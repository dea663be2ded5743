"""openssl(1): OpenSSL's own verdict on a certificate's identity (docs/tls.md, "Identity"),
and `openssl enc`, the stock mariabackup script's encrypt=1 stream encryption.

`openssl x509 -checkhost` runs X509_check_host with no flags and `-checkip` runs
X509_check_ip_asc: the very calls (and flags) stunnel makes for `checkHost` and `checkIP`,
so asking the openssl program gives the tunnel's verdict without re-implementing it.
"""

from __future__ import annotations

import re

from sst.errors import ConfigError


def identity_argv(binary: str, cert: str, name: str, *, ip: bool) -> tuple[str, ...]:
    """`openssl x509 -noout -in CERT -checkip|-checkhost NAME` (the first PEM certificate).

    Given the openssl binary, the certificate file, the name and whether it is an IP
    literal; returns the argv; raises ConfigError for a name that is empty or starts with
    '-' (openssl would read it as an option).
    """
    if not name or name.startswith("-") or "\0" in name:
        raise ConfigError(f"cannot check the certificate against the name {name!r}")
    return (binary, "x509", "-noout", "-in", cert, "-checkip" if ip else "-checkhost", name)


def identity_matches(stdout: str, name: str) -> bool | None:
    """Parse `Hostname|IP NAME does [NOT ]match certificate`: True, False, or None if absent."""
    for line in stdout.splitlines():
        for kind in ("Hostname", "IP"):
            head = f"{kind} {name} does "
            if line.startswith(head):
                rest = line[len(head) :].strip()
                if rest == "match certificate":
                    return True
                if rest == "NOT match certificate":
                    return False
    return None


def enc_kdf(help_text: str) -> tuple[str, ...]:
    """The key derivation flags the stock script adds, from `openssl enc -help`'s output:
    -pbkdf2 if listed (OpenSSL 1.1.1+), else `-iter 1`, else `-md sha256`, else none."""
    for word, flags in (("-pbkdf2", ("-pbkdf2",)), ("-iter", ("-iter", "1"))):
        if re.search(rf"(?<!\w){word}(?!\w)", help_text):
            return flags
    if re.search(r"(?<!\w)-md(?!\w)", help_text):
        return ("-md", "sha256")
    return ()


def enc_ciphers(list_text: str) -> frozenset[str]:
    """The cipher names `openssl enc -list` prints (without their dash)."""
    return frozenset(w[1:] for w in list_text.split() if w.startswith("-") and len(w) > 1)


def enc_argv(
    binary: str, algo: str, kdf: tuple[str, ...], keyfile: str, *, decrypt: bool
) -> tuple[str, ...]:
    """`openssl enc -ALGO [KDF] -kfile FILE [-d]`: stock's ecmd with the key read from a
    file (the first line of FILE is what stock passes with `-k`), never on the command line.
    Raises ConfigError for a cipher name openssl would read as something else."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", algo):
        raise ConfigError(f"encrypt-algo={algo!r} is not an openssl cipher name")
    return (binary, "enc", f"-{algo}", *kdf, "-kfile", keyfile, *(("-d",) if decrypt else ()))
