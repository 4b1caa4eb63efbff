// swift-tools-version:6.0
// smil: spatially-aware multiple instance learning on whole slide images, in Swift.
import PackageDescription

let optimize: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "smil",
    products: [
        .library(name: "Core", targets: ["Core"]),
        .executable(name: "smil", targets: ["SMILScript"]),
    ],
    targets: [
        // C libraries from Debian, each behind its own small module map.
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS"),
        .systemLibrary(name: "CReadline", path: "Sources/CReadline"),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG"),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG"),

        // libjpeg reports errors by longjmp: the jump stays inside this small C target.
        .target(name: "CJPEGCodec", dependencies: ["CJPEG"], path: "Sources/CJPEGCodec", linkerSettings: [.linkedLibrary("jpeg")]),
        .target(name: "CKernels", path: "Sources/CKernels",
                cSettings: [.unsafeFlags(["-O3", "-ffp-contract=off", "-fno-math-errno"])]),
        .target(name: "Core", dependencies: ["COpenBLAS", "CPNG", "CJPEG", "CJPEGCodec", "CKernels"], swiftSettings: optimize),
        .target(name: "Interpreter", dependencies: ["Core"], swiftSettings: optimize),
        .executableTarget(name: "SMILScript", dependencies: ["Core", "Interpreter", "CReadline"],
                          swiftSettings: optimize),
        .executableTarget(name: "smil-bench", dependencies: ["Core", "Interpreter"], path: "Sources/Bench",
                          swiftSettings: optimize),

        .target(name: "TestSupport", dependencies: ["Core"], path: "Tests/TestSupport"),
        .testTarget(name: "CoreTests", dependencies: ["Core", "CKernels", "TestSupport"]),
        .testTarget(name: "InterpreterTests", dependencies: ["Interpreter", "Core", "TestSupport"]),
        .testTarget(name: "SMILScriptTests", dependencies: ["SMILScript"]),
    ],
    swiftLanguageModes: [.v5]
)
