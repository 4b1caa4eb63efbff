// Extract.swift: `smil extract SOURCES... -o DIR --encoder NAME` — CLAM's extract_features_fp.py
// without Python: every tile of every slide (or tile folder) embedded, written as h5_files/ and
// pt_files/, resumable, with a progress line (tiles/s, ETA) on a terminal.

import Foundation
import Core

let extractUsage = """
usage: smil extract SLIDES_OR_TILE_DIRS... -o DIR [options]
  writes DIR/h5_files/SLIDE.h5 (features float32 [N, D], coords int64 [N, 2] with the patch
  attributes) and DIR/pt_files/SLIDE.pt (torch.save of the features) for every slide file, folder
  of slide files, folder of ROW_COL tiles or folder of such folders; slides already written are
  skipped.
  --encoder NAME    resnet50_trunc (CLAM's 1024-D, default), resnet18, resnet34, resnet50, wide_resnet50_2
  --weights FILE    a torchvision .pth or safetensors state dict (default: random weights, with a warning)
  --patches DIR     CLAM patch files (SLIDE.h5) giving each slide's tiles (default: tile it here)
  --size N          tile size when tiling here (default 256)
  --batch N         tiles per encoder batch (default 64)
  --workers N       decoding threads ahead of the encoder (default 2)
  --no-normalize    feed tiles in [0, 1] (default: ImageNet mean and std, what torchvision weights expect)
"""

func runExtract(_ arguments: [String]) -> Int32 {
    var output: String? = nil, encoderName = "resnet50_trunc", weights: String? = nil, patches: String? = nil
    var size = 256, batch = 64, workers = 2, normalize = true
    var sources: [String] = []
    var o = CommandLineOptions("extract", arguments, usage: extractUsage)
    while let a = o.next() {
        switch a {
        case "-o", "--output": output = o.value(a)
        case "--encoder": encoderName = o.value(a)
        case "--weights": weights = o.value(a)
        case "--patches": patches = o.value(a)
        case "--size": size = o.int(a, min: 1)
        case "--batch": batch = o.int(a, min: 1)
        case "--workers": workers = o.int(a, min: 0)
        case "--no-normalize": normalize = false
        case "-h", "--help": print(extractUsage); return 0
        default:
            if a.hasPrefix("-") { o.unknown(a) }
            sources.append(a)
        }
    }
    guard let out = output else { fail("smil extract: give the output folder with -o DIR\n\n\(extractUsage)") }
    guard !sources.isEmpty else { fail("smil extract: give at least one slide, tile folder or folder of them\n\n\(extractUsage)") }
    signal(SIGINT) { _ in Interrupt.request() }
    do {
        let found = try ExtractionSource.find(sources)
        let encoder = try FeatureExtraction.encoder(encoderName, weights: weights)
        if weights == nil { printError("smil extract: warning: \(encoderName) has random weights (give --weights FILE for pretrained ones)") }
        let todo = found.filter { !FeatureExtraction.isDone($0.id, in: out) }
        if todo.count < found.count { print("smil extract: \(found.count - todo.count) of \(found.count) already done in \(out)") }
        let terminal = isatty(1) != 0
        let started = Date()
        var totalTiles = 0, failed = 0
        for (k, source) in todo.enumerated() {
            let t0 = Date()
            do {
                let tiles = try FeatureExtraction.tiles(source, patches: patches, size: size)
                let features = try FeatureExtraction.extract(tiles, encoder: encoder, normalization: normalize ? .imagenet : nil,
                                                             batchSize: batch, workers: workers) { done, n in
                    guard terminal else { return }
                    print(progressLine(done: done, total: n, elapsed: Date().timeIntervalSince(t0), loss: nil) + "  \(source.id) (\(k + 1)/\(todo.count))\u{1B}[K", terminator: "")
                    fflush(stdout)
                }
                try FeatureExtraction.write(features: features, coords: tiles.coords, attributes: tiles.attributes, to: out, id: source.id)
                let seconds = Date().timeIntervalSince(t0)
                if terminal { print("\r\u{1B}[K", terminator: "") }
                print(String(format: "%@: %d tiles x %d in %.1f s (%.1f tiles/s)", source.id, features.shape[0], features.shape[1], seconds, Double(features.shape[0]) / seconds))
                totalTiles += features.shape[0]
            } catch CoreError.interrupted {
                throw CoreError.interrupted
            } catch {
                if terminal { print("\r\u{1B}[K", terminator: "") }
                failed += 1
                printError("\(source.id): failed: \(error)")
            }
        }
        let seconds = Date().timeIntervalSince(started)
        print(String(format: "smil extract: %d slides, %d tiles in %.1f s (%.1f tiles/s); %d failed", todo.count - failed, totalTiles, seconds,
                     seconds > 0 ? Double(totalTiles) / seconds : 0, failed))
        return failed > 0 ? 1 : 0
    } catch CoreError.interrupted {
        printError("smil extract: interrupted; finished slides are written, a rerun goes on from there")
        return 130
    } catch {
        printError("smil extract: \(error)")
        return 1
    }
}
