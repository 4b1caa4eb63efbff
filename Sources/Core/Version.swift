// Version.swift: the one place the release number lives.

/// smil's version, printed by `smil --version` and written into checkpoint manifests.
public let smilVersion = "0.1.0"
