// smil-fuzz-torchfile: the PyTorch-file reader (zip archive, legacy stream, restricted unpickler)
// as a libFuzzer target. scripts/fuzz builds it with -sanitize=fuzzer and -D FUZZING: this main
// then hands control to libFuzzer's driver (LLVMFuzzerRunDriver, with libFuzzer's usual options),
// which runs it from the golden files for a fixed time. Built plainly, as the test command builds
// every target, it reads each file named on its command line once: a corpus or crash file replays
// without libFuzzer.

import Foundation
import Core

/// One input: written to a file (the reader works on paths) and read. Errors are the expected
/// outcome for almost every input; only a crash, a hang or a leak is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTorchFile(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let path = FuzzScratch.path
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return 0 }
    _ = write(fd, bytes, count)
    close(fd)
    _ = try? TorchFile.read(path)
    return 0
}

enum FuzzScratch {
    static let path = FileManager.default.temporaryDirectory.appendingPathComponent("smil-fuzz-torchfile-\(getpid()).pt").path
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt
var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv, { fuzzTorchFile($0, $1) }))
#else
for path in CommandLine.arguments.dropFirst() {
    guard let data = FileManager.default.contents(atPath: path) else { print("cannot read \(path)"); continue }
    var bytes = [UInt8](data)
    bytes.append(0)   // a valid pointer even for an empty file
    _ = bytes.withUnsafeBufferPointer { fuzzTorchFile($0.baseAddress!, data.count) }
    print("\(path): read without a crash")
}
#endif
