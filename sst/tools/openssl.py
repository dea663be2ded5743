"""openssl(1): OpenSSL's own verdict on a certificate's identity (docs/tls.md, "Identity").

`openssl x509 -checkhost` runs X509_check_host with no flags and `-checkip` runs
X509_check_ip_asc: the very calls (and flags) stunnel makes for `checkHost` and `checkIP`,
so asking the openssl program gives the tunnel's verdict without re-implementing it.
"""

from __future__ import annotations

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
