// swift-tools-version:6.0
// A package that uses smil's Core the way a user's package would: by a versioned URL. It proves that
// Core builds as a dependency (SwiftPM refuses a dependency whose targets use unsafeFlags).
// scripts/check-dependent-package clones the repository, tags the clone and points
// SMIL_PACKAGE_URL at it.
import PackageDescription
import Foundation

// SMIL_PACKAGE_URL: a git URL of smil with a version tag (file:// works); a release URL otherwise.
let smil = ProcessInfo.processInfo.environment["SMIL_PACKAGE_URL"] ?? "file:///SMIL_PACKAGE_URL-is-not-set"

let package = Package(
    name: "uses-core",
    dependencies: [.package(url: smil, from: "0.1.0")],
    targets: [
        .executableTarget(name: "UsesCore", dependencies: [.product(name: "Core", package: "smil")]),
    ]
)
