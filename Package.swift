// swift-tools-version:6.0
// smil: spatially-aware multiple instance learning on whole slide images, in Swift.
import PackageDescription

let package = Package(
    name: "smil",
    products: [
        .library(name: "Core", targets: ["Core"]),
        .executable(name: "smil", targets: ["SMILScript"]),
    ],
    dependencies: [
        // Reads and writes torch.save's zip archives (stored entries, CRC-32, zip64).
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
    ],
    targets: [
        // C libraries from Debian, each behind its own small module map.
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS"),
        .systemLibrary(name: "CReadline", path: "Sources/CReadline"),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG"),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG"),
        .systemLibrary(name: "COpenSlide", path: "Sources/COpenSlide", pkgConfig: "openslide"),
        .systemLibrary(name: "CTIFF", path: "Sources/CTIFF", pkgConfig: "libtiff-4"),
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5"),

        // libjpeg reports errors by longjmp: the jump stays inside this small C target.
        .target(name: "CJPEGCodec", dependencies: ["CJPEG"], path: "Sources/CJPEGCodec", linkerSettings: [.linkedLibrary("jpeg")]),
        // libtiff's variadic setters and HDF5's macro identifiers, wrapped as plain C functions.
        .target(name: "CSlideIO", dependencies: ["CTIFF", "CHDF5"], path: "Sources/CSlideIO"),
        // No unsafe build flags anywhere, so that Core builds as another package's dependency: release
        // builds are SwiftPM's plain -O with whole-module optimisation and bounds and overflow
        // checks kept; the kernels' floating-point contraction is turned off by a pragma in
        // kernels.h, not by a flag.
        .target(name: "CKernels", path: "Sources/CKernels"),
        .target(name: "Core", dependencies: ["COpenBLAS", "CPNG", "CJPEG", "CJPEGCodec", "CKernels", "COpenSlide", "CSlideIO",
                                            .product(name: "ZIPFoundation", package: "ZIPFoundation")]),
        .target(name: "Interpreter", dependencies: ["Core"]),
        .executableTarget(name: "SMILScript", dependencies: ["Core", "Interpreter", "CReadline"]),
        .executableTarget(name: "smil-bench", dependencies: ["Core", "Interpreter"], path: "Sources/Bench"),
        // A libFuzzer target for the PyTorch-file reader; scripts/fuzz builds it with the fuzzer on.
        .executableTarget(name: "smil-fuzz-torchfile", dependencies: ["Core"], path: "Sources/FuzzTorchFile"),

        .target(name: "TestSupport", dependencies: ["Core"], path: "Tests/TestSupport"),
        .testTarget(name: "CoreTests", dependencies: ["Core", "CKernels", "TestSupport"]),
        .testTarget(name: "InterpreterTests", dependencies: ["Interpreter", "Core", "TestSupport"]),
        .testTarget(name: "SMILScriptTests", dependencies: ["SMILScript"]),
    ],
    swiftLanguageModes: [.v5]
)
