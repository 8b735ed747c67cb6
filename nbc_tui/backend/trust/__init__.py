"""Image trust: which signatures an image pulled from a registry must carry, and checking them.

``policy`` reads containers' policy.json, ``lookaside`` registries.d, ``scopes`` matches both to an image;
``claims`` reads the signed payload both formats share; ``gpg`` (simple signing, with gpgv) and ``cosign``
(key-based cosign signatures, with ``cryptography``) check one signature each; ``verify`` decides for a pull.
"""
