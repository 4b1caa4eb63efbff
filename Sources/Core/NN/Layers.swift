// Layers.swift: the dense layers, with PyTorch's parameter names, layouts and initialisation.

import Foundation

/// PyTorch's default initialisation for Linear and Conv2d: kaiming_uniform(a = sqrt(5)), which
/// is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for weight and bias alike.
func defaultUniform(_ shape: [Int], fanIn: Int, op: String) throws -> Tensor {
    try Memory.checkAllocation(shape, op: op)
    let bound = fanIn > 0 ? 1 / Float(fanIn).squareRoot() : 0
    return try Tensor.rand(shape, low: -bound, high: bound)
}

/// `y = x W^T + b`: weight `[out, in]`, bias `[out]`.
public final class Linear: Module {
    public let inFeatures, outFeatures: Int
    public let weight: Parameter
    public let bias: Parameter?

    /// Zero features are allowed, as in PyTorch: `Linear(0, 3)` maps `[N, 0]` to the bias.
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) throws {
        try Require.nonNegative(inFeatures, "in_features", op: "Linear")
        try Require.nonNegative(outFeatures, "out_features", op: "Linear")
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        let w = try defaultUniform([outFeatures, inFeatures], fanIn: inFeatures, op: "Linear")
        let b = bias ? try defaultUniform([outFeatures], fanIn: inFeatures, op: "Linear") : nil
        weight = Parameter(w)
        self.bias = b.map { Parameter($0) }
        super.init()
        registerParameter("weight", weight)
        if let b = self.bias { registerParameter("bias", b) }
    }

    public override func forward(_ x: Tensor) throws -> Tensor {
        try Functional.linear(x, weight: weight.value, bias: bias?.value)
    }

    public override var extraDescription: String { "in_features=\(inFeatures), out_features=\(outFeatures), bias=\(bias != nil)" }
}

/// 2-D convolution: weight `[out, in, k, k]`, bias `[out]`.
public final class Conv2d: Module {
    public let inChannels, outChannels, kernelSize, stride, padding, dilation: Int
    public let weight: Parameter
    public let bias: Parameter?

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                dilation: Int = 1, bias: Bool = true) throws {
        try Require.positive(inChannels, "in_channels", op: "Conv2d")
        try Require.positive(outChannels, "out_channels", op: "Conv2d")
        try Require.positive(kernelSize, "kernel_size", op: "Conv2d")
        try Require.positive(stride, "stride", op: "Conv2d")
        try Require.nonNegative(padding, "padding", op: "Conv2d")
        try Require.positive(dilation, "dilation", op: "Conv2d")
        guard stride <= 1 << 30, padding <= 1 << 30, dilation <= 1 << 30 else {
            throw CoreError.invalidArgument(op: "Conv2d", "stride \(stride), padding \(padding) and dilation \(dilation) must each be at most 2^30")
        }
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        let shape = [outChannels, inChannels, kernelSize, kernelSize]
        let fanIn = try Memory.checkAllocation(shape, op: "Conv2d") / outChannels
        weight = Parameter(try defaultUniform(shape, fanIn: fanIn, op: "Conv2d"))
        self.bias = bias ? Parameter(try defaultUniform([outChannels], fanIn: fanIn, op: "Conv2d")) : nil
        super.init()
        registerParameter("weight", weight)
        if let b = self.bias { registerParameter("bias", b) }
    }

    public override func forward(_ x: Tensor) throws -> Tensor {
        try Functional.conv2d(x, weight: weight.value, bias: bias?.value, stride: stride, padding: padding, dilation: dilation)
    }

    public override var extraDescription: String {
        "\(inChannels), \(outChannels), kernel_size=(\(kernelSize), \(kernelSize)), stride=(\(stride), \(stride))"
            + (padding > 0 ? ", padding=(\(padding), \(padding))" : "") + (bias == nil ? ", bias=False" : "")
    }
}

/// Batch normalisation over channels of `[N, C, H, W]`, with PyTorch's buffers
/// (`running_mean`, `running_var`, `num_batches_tracked`) and momentum update.
public final class BatchNorm2d: Module {
    public let numFeatures: Int
    public let eps, momentum: Float
    public let weight, bias: Parameter
    let runningMean, runningVar, batchesTracked: Buffer

    public init(_ numFeatures: Int, eps: Float = 1e-5, momentum: Float = 0.1) throws {
        try Require.nonNegative(numFeatures, "num_features", op: "BatchNorm2d")
        guard eps >= 0, eps.isFinite else { throw CoreError.invalidArgument(op: "BatchNorm2d", "eps must be finite and non-negative, got \(eps)") }
        try Require.inRange(momentum, 0...1, "momentum", op: "BatchNorm2d")
        self.numFeatures = numFeatures
        self.eps = eps
        self.momentum = momentum
        weight = Parameter(try .full([numFeatures], 1, op: "BatchNorm2d"))
        bias = Parameter(try .full([numFeatures], 0, op: "BatchNorm2d"))
        runningMean = Buffer(.float(try .full([numFeatures], 0, op: "BatchNorm2d")))
        runningVar = Buffer(.float(try .full([numFeatures], 1, op: "BatchNorm2d")))
        batchesTracked = Buffer(.int(IntTensor(repeating: 0, shape: [])))
        super.init()
        registerParameter("weight", weight)
        registerParameter("bias", bias)
        registerBuffer("running_mean", runningMean)
        registerBuffer("running_var", runningVar)
        registerBuffer("num_batches_tracked", batchesTracked)
    }

    public override func forward(_ x: Tensor) throws -> Tensor { try forward(x, relu: false) }

    /// Batch norm, optionally fused with the ReLU that follows it.
    public func forward(_ x: Tensor, relu: Bool) throws -> Tensor {
        var rm = runningMean.value.asFloat, rv = runningVar.value.asFloat
        // Drop our references first so the in-place update does not copy.
        runningMean.value = .float(Tensor(repeating: 0, shape: [0]))
        runningVar.value = .float(Tensor(repeating: 0, shape: [0]))
        defer { runningMean.value = .float(rm); runningVar.value = .float(rv) }
        let y = try Functional.batchNorm2d(x, weight: weight.value, bias: bias.value, runningMean: &rm, runningVar: &rv,
                                           training: training, momentum: momentum, eps: eps, relu: relu)
        if training, case .int(var t) = batchesTracked.value {
            t.scalars[0] += 1
            batchesTracked.value = .int(t)
        }
        // ResNet's blocks call this fused form directly, not through callAsFunction.
        ModelSummary.observe(self, shapeString(y.shape))
        return y
    }

    /// The running statistics (mean, variance).
    public var runningStatistics: (mean: Tensor, variance: Tensor) { (runningMean.value.asFloat, runningVar.value.asFloat) }

    public override var extraDescription: String { "\(numFeatures), eps=\(eps), momentum=\(momentum)" }
}

/// `max(x, 0)`.
public final class ReLU: Module {
    public override func forward(_ x: Tensor) throws -> Tensor { x.relu() }
}

/// Max pooling with a square window.
public final class MaxPool2d: Module {
    public let kernelSize, stride, padding: Int
    public init(_ kernelSize: Int, stride: Int? = nil, padding: Int = 0) throws {
        try Require.positive(kernelSize, "kernel_size", op: "MaxPool2d")
        if let stride { try Require.positive(stride, "stride", op: "MaxPool2d") }
        try Require.nonNegative(padding, "padding", op: "MaxPool2d")
        guard padding <= kernelSize / 2 else {
            throw CoreError.invalidArgument(op: "MaxPool2d", "padding (\(padding)) must be at most half of kernel_size (\(kernelSize))")
        }
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
    }
    public override func forward(_ x: Tensor) throws -> Tensor {
        try Functional.maxPool2d(x, kernel: kernelSize, stride: stride, padding: padding)
    }
    public override var extraDescription: String { "kernel_size=\(kernelSize), stride=\(stride), padding=\(padding)" }
}

/// Adaptive average pooling to a fixed output size.
public final class AdaptiveAvgPool2d: Module {
    public let outHeight, outWidth: Int
    public init(_ outHeight: Int, _ outWidth: Int? = nil) throws {
        try Require.positive(outHeight, "output_size", op: "AdaptiveAvgPool2d")
        if let outWidth { try Require.positive(outWidth, "output_size", op: "AdaptiveAvgPool2d") }
        self.outHeight = outHeight
        self.outWidth = outWidth ?? outHeight
    }
    public override func forward(_ x: Tensor) throws -> Tensor {
        try Functional.adaptiveAvgPool2d(x, outHeight: outHeight, outWidth: outWidth)
    }
    public override var extraDescription: String { "output_size=(\(outHeight), \(outWidth))" }
}

/// `tanh(x)`.
public final class Tanh: Module {
    public override func forward(_ x: Tensor) throws -> Tensor { x.tanh() }
}

/// `1 / (1 + exp(-x))`.
public final class Sigmoid: Module {
    public override func forward(_ x: Tensor) throws -> Tensor { x.sigmoid() }
}

/// Randomly zeroes elements in training.
public final class Dropout: Module {
    public let p: Float
    public init(_ p: Float = 0.5) throws {
        try Require.inRange(p, 0...1, "dropout probability p", op: "Dropout")
        self.p = p
    }
    public override func forward(_ x: Tensor) throws -> Tensor { try Functional.dropout(x, p: p, training: training) }
    public override var extraDescription: String { "p=\(p)" }
}

/// Flattens all dimensions from `start` on.
public final class Flatten: Module {
    public let start, end: Int
    public init(start: Int = 1, end: Int = -1) { self.start = start; self.end = end }
    public override func forward(_ x: Tensor) throws -> Tensor { try x.flattened(start: start, end: end) }
}

/// Returns its input.
public final class Identity: Module {
    public override func forward(_ x: Tensor) throws -> Tensor { x }
}

/// Applies children in order; children are named "0", "1", ...
public final class Sequential: Module {
    public init(_ modules: [Module]) {
        super.init()
        for (i, m) in modules.enumerated() { registerChild(String(i), m) }
    }

    public var count: Int { children.count }
    public subscript(i: Int) -> Module { children[i].module }

    public override func forward(_ x: Tensor) throws -> Tensor {
        var y = x
        var i = 0
        while i < children.count {
            let m = children[i].module
            // Fuse BatchNorm2d + ReLU into one pass.
            if let bn = m as? BatchNorm2d, i + 1 < children.count, children[i + 1].module is ReLU {
                y = try bn.forward(y, relu: true)
                i += 2
                continue
            }
            y = try m(y)
            i += 1
        }
        return y
    }
}
