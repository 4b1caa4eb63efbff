// Demo.swift: `smil demo` — trains a small ResNet on random tensors and prints the loss falling.
// It is the README's main command until SparseConvMIL's synthetic-slide demo lands.

import Foundation
import Core

struct Demo {
    var steps = 30
    var seed: UInt64 = 0
    var batch = 8
    var size = 32

    func run() throws {
        RandomGenerator.seed(seed)
        let model = try resnet18(numClasses: 2)
        let images = try Tensor.rand([batch, 3, size, size])
        let labels = try IntTensor.randint(0, 2, shape: [batch])
        let opt = try Adam(model.allParameters(), lr: 1e-3)
        print("smil \(smilVersion): resnet18 (\(model.numParameters()) parameters) on \(batch) random \(size)x\(size) images, "
              + "Adam lr 1e-3, seed \(seed), \(Parallel.threads) threads")
        let start = Date()
        var first: Float = 0, last: Float = 0
        for step in 1...steps {
            opt.zeroGrad()
            let loss = try Loss.crossEntropy(model(images), labels)
            try loss.backward()
            try opt.step()
            last = try loss.item()
            if step == 1 { first = last }
            if step == 1 || step % 5 == 0 || step == steps {
                print(String(format: "step %4d/%d    loss=%.4f    %.2fs", step, steps, last, Date().timeIntervalSince(start)))
            }
        }
        print(String(format: "loss %.4f -> %.4f in %d steps", first, last, steps))
    }
}
