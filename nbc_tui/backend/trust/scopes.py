"""The scopes a policy.json or registries.d entry can name for an image, most specific first (containers'
rules): the reference as given, the repository, each enclosing namespace, the host, then ``*.domain``
wildcards of the host."""

from __future__ import annotations

from ..image.reference import RegistryRef


def docker_scopes(ref: RegistryRef) -> list[str]:
    """``host/ns/repo:tag`` (or ``@digest``), ``host/ns/repo``, ``host/ns``, ``host``, ``*.domain``..."""
    repo = f"{ref.display_registry}/{ref.repository}"
    found = []
    if ref.digest:
        found.append(f"{repo}@{ref.digest}")
    elif ref.tag:
        found.append(f"{repo}:{ref.tag}")
    parts = repo.split("/")
    found += ["/".join(parts[:n]) for n in range(len(parts), 0, -1)]
    host = ref.display_registry.partition(":")[0]
    labels = host.split(".")
    if not host.replace(".", "").isdigit():  # an IP address has no parent domains
        found += ["*." + ".".join(labels[n:]) for n in range(1, len(labels))]
    return found


def most_specific(entries: dict[str, object], ref: RegistryRef) -> str | None:
    """The key of ``entries`` that applies to ``ref`` (None: none does, the default applies)."""
    for scope in docker_scopes(ref):
        if scope in entries:
            return scope
    return None
